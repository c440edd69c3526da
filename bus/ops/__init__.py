"""Operating the bus: looking into streams and groups, dead letters, finding and replaying messages,
statistics, and Prometheus metrics. Import the submodules; this package loads nothing by itself, so that
a process that serves no metrics never imports prometheus-client."""
