"""`jobpool ui`: a web page for the people who run the jobs (server-rendered by aiohttp, live
figures over Server-Sent Events, templates and static files shipped as package data)."""
