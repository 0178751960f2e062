// Package adapter is the root of the running ipsfhir system: the packages
// beneath it (store, outbox, EHR client, sync plan, sync engine, API,
// telemetry) move IPS records between the program's store and clinic EHRs.
// They arrive with the sync engine; this package holds no code of its own.
package adapter
