module github.com/meshnode/meshnode

go 1.26.0
