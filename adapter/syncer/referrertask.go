package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// Answering a referral on the referrer's own Task. Where the EHR takes no
// new Tasks but finds them by focus and updates them (Epic declares Task
// read, search-type and update), the referrer's system made a Task for the
// referral when it sent it, as the SDOH Clinical Care closed loop does, and
// the program, the performer, answers by moving that Task's status:
// received, then accepted or rejected (mappings.ReferralAnswer). Only the
// status (with statusReason when rejected) and lastModified change; the
// rest of the Task is the referrer's and is sent back as read.
//
// A Task is moved forward only: from requested or received, never back,
// and never out of a state someone else set (in-progress, on-hold,
// cancelled, completed, failed, entered-in-error): the referrer's or the
// clinic's say stands, and the answer is recorded as given so that it is
// not tried again until it changes. The answer given is remembered in the
// ledger under the key the program's own Task would have
// (KindReferralTask), with the Task's id and a hash of the answer, so a
// push with the same answer costs no request. A referral with no Task yet
// is looked up again at the client's next push.

// taskRank orders the statuses a referral's answer moves through; a status
// not listed is one the program does not move a Task out of.
var taskRank = map[string]int{
	"requested":           0,
	mappings.TaskReceived: 1,
	mappings.TaskAccepted: 2,
	mappings.TaskRejected: 2,
}

// referrerTaskJSON is what the engine reads of a referrer's Task.
type referrerTaskJSON struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Status       string `json:"status"`
	Meta         struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Focus struct {
		Reference string `json:"reference"`
	} `json:"focus"`
	Code struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"code"`
}

func (t referrerTaskJSON) fulfills() bool {
	return slices.ContainsFunc(t.Code.Coding, func(c struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}) bool {
		return c.System == mappings.SystemTaskCode && c.Code == "fulfill"
	})
}

// answerReferrerTask answers the referral of the client's current episode
// on the referrer's Task, where the plan says so
// (plan.AnswersReferrerTasks). Only store errors and the EHR's errors on
// the search and the update are returned.
func (e *Engine) answerReferrerTask(ctx context.Context, conn *Connection, c *ips.Client) (PushSummary, error) {
	var s PushSummary
	ref := c.Referral
	if !conn.Plan.AnswersReferrerTasks() || ref == nil || ref.Connection != conn.Name || ref.ServiceRequest == "" {
		return s, nil
	}
	status, reason := mappings.ReferralAnswer(c)
	want := hashBytes([]byte(status + "\n" + reason))
	lk := ledgerKey(conn.Mapping.ReferralTaskKey(c, ref.ServiceRequest))
	row, err := e.Store.LedgerGet(ctx, conn.Name, lk)
	switch {
	case err == nil && row.ContentHash == want:
		return s, nil // answered so already
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}

	task, raw, err := e.findReferrerTask(ctx, conn, ref.ServiceRequest)
	if err != nil || task == nil {
		return s, err
	}
	done := store.LedgerEntry{Connection: conn.Name, Key: lk, ClientID: c.ID, ResourceType: "Task",
		ResourceID: task.ID, VersionID: task.Meta.VersionID, ContentHash: want, UpdatedAt: e.now()}
	cur, known := taskRank[task.Status]
	switch {
	case task.Status == status:
		// Already so (an answer whose reply was lost, or the clinic's own).
	case !known || task.Status == mappings.TaskAccepted || task.Status == mappings.TaskRejected || cur >= taskRank[status]:
		e.log().InfoContext(ctx, "referral task left as the EHR holds it", "connection", conn.Name, "task_status", task.Status, "answer", status)
	default:
		v, err := e.updateReferrerTask(ctx, conn, task, raw, status, reason)
		if err != nil {
			return s, err
		}
		s.Written++
		done.VersionID = v
	}
	if err := e.Store.LedgerPut(ctx, done); err != nil {
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return s, nil
}

// findReferrerTask searches the Tasks whose focus is the ServiceRequest
// and returns the one to answer on: a fulfill Task before any other, then
// the most recently updated, then the smallest id (the same EHR content
// always gives the same choice). nil when there is none.
func (e *Engine) findReferrerTask(ctx context.Context, conn *Connection, serviceRequest string) (*referrerTaskJSON, map[string]any, error) {
	focus, _ := conn.Plan.Type("Task").Searches("focus")
	srRef := "ServiceRequest/" + serviceRequest
	entries, err := conn.EHR.Search(ctx, "Task", url.Values{focus: {srRef}, "_count": {"50"}})
	if err != nil {
		return nil, nil, err
	}
	type found struct {
		t   referrerTaskJSON
		raw map[string]any
	}
	var all []found
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var t referrerTaskJSON
		if json.Unmarshal(en.Resource, &t) != nil || t.ResourceType != "Task" || t.ID == "" {
			continue
		}
		// Every condition is checked here too: EHRs differ in what a
		// search parameter matches. An absolute reference ends in it.
		if t.Focus.Reference != srRef && !strings.HasSuffix(t.Focus.Reference, "/"+srRef) {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(en.Resource))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) != nil {
			continue
		}
		all = append(all, found{t, m})
	}
	if len(all) == 0 {
		return nil, nil, nil
	}
	best := slices.MinFunc(all, func(a, b found) int {
		if fa, fb := a.t.fulfills(), b.t.fulfills(); fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		if c := instant(b.t.Meta.LastUpdated).Compare(instant(a.t.Meta.LastUpdated)); c != 0 {
			return c
		}
		return strings.Compare(a.t.ID, b.t.ID)
	})
	return &best.t, best.raw, nil
}

// updateReferrerTask sends the referrer's Task back as read with the new
// status (and statusReason when rejected) and lastModified; with If-Match
// where the EHR versions Tasks and the version is known. It returns the
// version written, if the EHR said.
func (e *Engine) updateReferrerTask(ctx context.Context, conn *Connection, task *referrerTaskJSON, m map[string]any, status, reason string) (string, error) {
	m["status"] = status
	if reason != "" {
		m["statusReason"] = map[string]any{"text": reason}
	} else {
		delete(m, "statusReason")
	}
	m["lastModified"] = e.now().UTC().Format(time.RFC3339)
	body, err := json.Marshal(m)
	if err != nil {
		return "", &pushError{msg: "push: encode the referrer's Task"}
	}
	ifMatch := ""
	if rp := conn.Plan.Type("Task"); rp != nil && rp.Concurrency == plan.IfMatch {
		ifMatch = task.Meta.VersionID
	}
	resp, err := conn.EHR.Update(ctx, "Task", task.ID, body, ifMatch)
	switch {
	case errors.Is(err, ehr.ErrConflict):
		// Changed since it was read: the item's retry reads it again.
		e.record(ctx, conn.Name, "Task", telemetry.OutcomeConflict, err)
		return "", err
	case err != nil:
		e.record(ctx, conn.Name, "Task", telemetry.OutcomeFailed, err)
		return "", err
	}
	e.record(ctx, conn.Name, "Task", telemetry.OutcomeWritten, nil)
	return resp.VersionID, nil
}
