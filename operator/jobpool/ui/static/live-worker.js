// One stream of live figures for every open page of this UI: a browser keeps at most 6 HTTP/1.1
// connections to one server, so a stream per tab would stall the seventh tab's page load.
"use strict";
var ports = [], last = null, state = "off", source = null;
function tell(message) { ports.forEach(function (port) { port.postMessage(message); }); }
function open() {
  source = new EventSource("../events");
  source.onopen = function () { state = "on"; tell({state: state}); };
  source.onerror = function () { state = "off"; tell({state: state}); };
  source.onmessage = function (message) { last = message.data; tell({data: last}); };
}
self.onconnect = function (event) {
  var port = event.ports[0];
  ports.push(port);
  port.onmessage = function (message) {   // a page that goes away says so
    if (message.data === "bye") ports = ports.filter(function (p) { return p !== port; });
  };
  port.start();
  if (source === null) open();
  port.postMessage({state: state});
  if (last !== null) port.postMessage({data: last});
};
