package api

// CheckOpenAPI is checkOpenAPI for the external tests: every response the
// harness receives is held to openapi.json.
var CheckOpenAPI = checkOpenAPI
