package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// Which connections are enabled: the configuration file's enabled:, except
// for a connection an administrator enabled or disabled from the console
// (store.ConnectionSetting), which wins until it is cleared. Every command
// reads the same: serve, sync and import queue and push for the same
// connections the console shows enabled.

// enabledSet is which connections are enabled, and why.
type enabledSet struct {
	// names are the enabled connections, in file order.
	names []string
	// settings are the console's settings of configured connections, by
	// name.
	settings map[string]store.ConnectionSetting
}

// enabledOf works out which of cfg's connections are enabled given the
// console's settings; settings of connections no longer configured are
// left out.
func enabledOf(cfg *config.Config, settings []store.ConnectionSetting) enabledSet {
	by := map[string]store.ConnectionSetting{}
	for _, s := range settings {
		by[s.Name] = s
	}
	out := enabledSet{settings: map[string]store.ConnectionSetting{}}
	for _, cn := range cfg.Connections {
		on := cn.Enabled
		if s, ok := by[cn.Name]; ok {
			on = s.Enabled
			out.settings[cn.Name] = s
		}
		if on {
			out.names = append(out.names, cn.Name)
		}
	}
	return out
}

// readEnabled reads the console's settings from st and works out which of
// cfg's connections are enabled.
func readEnabled(ctx context.Context, cfg *config.Config, st store.Store) (enabledSet, error) {
	settings, err := st.ConnectionSettings(ctx)
	if err != nil {
		return enabledSet{}, err
	}
	return enabledOf(cfg, settings), nil
}

// enabledState is the enabled set of a running service, kept current
// (refresh) as administrators change it on any replica.
type enabledState struct {
	mu  sync.Mutex
	set enabledSet
	// applying serialises refreshes, so that two cannot seed and set the
	// runner in the wrong order.
	applying sync.Mutex
}

func (e *enabledState) get() enabledSet {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.set
}

// enabledConnections are the connections enabled now, in file order.
func (s *system) enabledConnections() []string { return slices.Clone(s.enabled.get().names) }

// refreshEnabled reads the console's settings and, when the enabled
// connections changed, queues the whole caseload for each connection newly
// enabled (SeedConnections: once, whichever replica gets there first) and
// starts or stops connections in the runner.
func (s *system) refreshEnabled(ctx context.Context) error {
	s.enabled.applying.Lock()
	defer s.enabled.applying.Unlock()
	now, err := readEnabled(ctx, s.cfg, s.store)
	if err != nil {
		return err
	}
	before := s.enabled.get()
	if slices.Equal(before.names, now.names) {
		s.enabled.mu.Lock()
		s.enabled.set = now // who changed it may differ
		s.enabled.mu.Unlock()
		return nil
	}
	seeded, err := s.store.SeedConnections(ctx, now.names)
	if err != nil {
		return err
	}
	s.enabled.mu.Lock()
	s.enabled.set = now
	s.enabled.mu.Unlock()
	s.runner.SetEnabled(now.names)
	for _, name := range now.names {
		if n := seeded[name]; n > 0 {
			s.logger.InfoContext(ctx, "connection enabled: every client queued for it", "connection", name, "clients", n)
		}
	}
	return nil
}

// settingsPoll is how often a running service reads the console's
// settings, to follow what an administrator changed on another replica.
const settingsPoll = 5 * time.Second

// followSettings refreshes the enabled connections every settingsPoll until
// ctx ends. A store that does not answer is logged and tried again.
func (s *system) followSettings(ctx context.Context) {
	t := time.NewTicker(settingsPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.refreshEnabled(ctx); err != nil && ctx.Err() == nil {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "cannot read the connections enabled from the console", slog.String("component", "serve"),
				slog.String("error_kind", "store"))
		}
	}
}

// setConnection records an administrator's choice for a connection
// (enabled true or false, or nil: follow the configuration file again) and
// applies it at once on this replica; the others follow within
// settingsPoll.
func (s *system) setConnection(ctx context.Context, name string, enabled *bool, by string) error {
	var err error
	if enabled == nil {
		err = s.store.ClearConnectionSetting(ctx, name)
	} else {
		err = s.store.SetConnectionSetting(ctx, store.ConnectionSetting{Name: name, Enabled: *enabled, By: by, At: time.Now()})
	}
	if err != nil {
		return err
	}
	return s.refreshEnabled(ctx)
}
