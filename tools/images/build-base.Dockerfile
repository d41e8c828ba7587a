# The build stage's base for offline builds: BASE plus the project's dependencies as wheels,
# with pip told to install from them only. Context: the wheelhouse made on the host.
ARG BASE
FROM ${BASE}
COPY . /wheels/
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
