// Package faultproxy is a reverse proxy that breaks requests on purpose. It
// sits between the adapter and a FHIR server (in tests, the peer in
// conformance/peer) and makes a chosen share of requests fail the ways a
// clinic EHR and the network in front of it fail, so the adapter's retry,
// outcome-unknown and reconciliation paths run against real connections
// instead of being assumed.
//
// # What it is for
//
// The fault suite arms exact faults: "lose the reply of the next PUT
// Goal/…", "reset the third POST". Once and Nth fire exactly once each, and
// each Rule's Done channel says when its fault has been applied, so a test
// can then look at the peer (was the Goal written? once?) without sleeping.
//
// The soak run draws faults at random: Options.Rate of the requests, kinds
// from Options.Kinds, from a generator seeded with Options.Seed, so a failing
// run can be replayed: the n-th request gets the same draw whatever the
// rate, the scope or the armed rules, so with one client at a time the same
// requests get the same faults; with concurrent clients the order requests
// arrive in is the only thing left to chance. At the end the run calls SetRate(0) (and
// ReleaseHung) and lets the adapter converge, then checks the EHR holds
// exactly one of everything. Stats and FaultLog feed its report; neither
// holds URLs, queries, ids or bodies.
//
// To work out afterwards which request wrote what, Options.RequestLog
// records every request as a JSON line: path, query, If-Match (of the
// request and of each Bundle entry), the fault, the target's answer (also
// the one a lost reply or a hung request kept from the client), and the
// resources of body and reply as RequestLog.Describe renders them. It
// holds ids and search parameters, so it is for a test's own files over
// synthetic data, and off unless set.
//
// The peer can inject faults of its own (X-Peer-Fault), but only when the
// client sends that header, which the adapter never does. The proxy needs
// nothing from either side.
//
// # The kinds and the failures they stand for
//
// Whether the target applied the request is what matters to a client, and
// the client cannot see it; the proxy decides it per kind:
//
//   - 500: an EHR bug or a failing database behind it. Not applied. The
//     adapter does not retry a 500 at once (it is often the request's own
//     fault); the outbox retries it later.
//   - 502: a gateway (a load balancer, an integration engine, an API
//     management layer) could not get an answer from the EHR. The proxy
//     never forwards it, but in real life the EHR may have applied the
//     request before the gateway gave up, so a client must treat a 502 to a
//     plain POST as "outcome unknown" and look the resource up.
//   - 503: maintenance window or overload, sent without Retry-After, so the
//     client's own backoff runs. Not applied.
//   - 429: rate limiting, with Retry-After (Options.RetryAfter, default
//     1 s). Not applied.
//   - hang: an EHR that is slow (lock contention, a long transaction, a
//     stalled interface engine) so the client's timeout fires first. The
//     request is held for Options.Hang, then forwarded anyway and its reply
//     thrown away: the write lands after the client gave up on it, as it
//     does on a real slow EHR. If the client is still connected when the
//     hold ends, its connection is reset. ReleaseHung ends every hold at
//     once, which lets a test decide when the late write lands.
//   - reset: the connection dies before the EHR sees the request: a load
//     balancer or firewall dropping an idle keep-alive connection, a server
//     restarting. The client's connection is reset (TCP RST) as soon as the
//     request arrives. Not applied, but the client had sent it and cannot
//     know that.
//   - lost-reply: the write was committed and the answer never arrived: a
//     network partition or a gateway timing out after the EHR finished. The
//     proxy forwards the request, reads the whole reply, then resets the
//     client connection. This is the case that makes duplicate creates, the
//     one the adapter's "outcome unknown" handling exists for.
//
// Go's http.Transport resends a GET (or HEAD, OPTIONS, TRACE) by itself
// once when a reused keep-alive connection is reset or closed before any
// answer, so a reset or lost reply on such a request can be invisible to the
// caller; the fault is still injected and counted. POST, PUT and PATCH are
// not resent by the transport once sent (unless they carry an
// Idempotency-Key header), so the client sees the error.
//
// # What passes through
//
// Everything not faulted is forwarded with httputil.ReverseProxy: path and
// query unchanged, hop-by-hop headers dropped, ETag, Location, Retry-After,
// Content-Type and the rest of the reply kept. The proxy's FHIR base is the
// target's path under the proxy's address. Like a gateway in front of an
// EHR, it rewrites the target's own absolute URLs to its own address: in
// Location and Content-Location, and in JSON bodies (Bundle links and
// fullUrls, the SMART token endpoint). Otherwise a client would follow a
// next link straight to the target, or, like the adapter, which follows
// next links only under its base URL, stop paging. A forward that gets no
// reply at all is answered 502, as a gateway would, and counted in
// Stats.UpstreamErrors rather than as a fault.
//
// The proxy logs nothing: net/http's and httputil's loggers are silenced
// because their messages quote URLs and client addresses.
package faultproxy
