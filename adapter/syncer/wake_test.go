package syncer

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
)

// TestRunnerPushesASaveAtOnce: with a push interval of an hour, a client
// saved after the first pass still reaches the EHR, because the save wakes
// the push loop (store.Store.WatchOutbox). On PostgreSQL the save goes
// through another Store on the same database, as another replica's API
// would save it.
func TestRunnerPushesASaveAtOnce(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rr := newRunRig(t, 2)
			saver := rr.store
			if kind == "postgres" {
				dsn := storetest.PostgresDSN(t)
				open := func() store.Store {
					st, err := postgres.Open(t.Context(), dsn)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { st.Close() })
					return st
				}
				rr.store, saver = open(), open()
			}
			rr.enqueue(t, "clinic")
			r := NewRunner(rr.engine(), Schedule{PushInterval: time.Hour, PollInterval: time.Hour},
				rr.connector(t, "clinic", rr.peer.BaseURL))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			dump := func() string {
				b, _ := json.MarshalIndent(r.Snapshot(), "", " ")
				return string(b) + "\n" + rr.log.String()
			}
			waitFor(t, "the first push pass", func() bool {
				return rr.depth(t, "clinic") == 0 && !connStatus(r, "clinic").LastPush.IsZero()
			}, dump)
			first := connStatus(r, "clinic").LastPush

			c := rr.cl.Clients[0]
			_, v, err := saver.GetClient(t.Context(), c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := saver.SaveClients(t.Context(), []store.Stored{{Client: c, Version: v}}, []string{"clinic"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the save pushed within the hour's pause", func() bool {
				return rr.depth(t, "clinic") == 0 && connStatus(r, "clinic").LastPush.After(first)
			}, dump)
			if dl, err := rr.store.DeadLetters(t.Context(), ""); err != nil || len(dl) != 0 {
				t.Errorf("dead letters %+v, %v; want none", dl, err)
			}
		})
	}
}
