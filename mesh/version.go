package mesh

// Version is the running meshnode's version, reported in metrics. The CLI
// sets it from its build stamp before it starts a node; embedders may too.
var Version = "dev"
