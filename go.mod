module github.com/ipsfhir/ipsfhir

go 1.26.8

require (
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.2
	golang.org/x/text v0.43.0
)
