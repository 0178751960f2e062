// Package deploy holds what docker-compose.yml runs ipsfhir with: the
// configuration it mounts (ipsfhir.yaml). It has no code; its test checks,
// without Docker, that the compose file and that configuration agree with
// each other and with the service: the services are there, the
// configuration loads with the service's own loader, the secrets it names
// are provided, and traces go to the Jaeger service.
package deploy
