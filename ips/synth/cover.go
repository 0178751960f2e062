package synth

import (
	"slices"

	"github.com/ipsfhir/ipsfhir/ips"
)

// coverEveryValue adds or adjusts records, each consistent with its client's
// story, until every enumerated value appears.
func (g *gen) coverEveryValue(stories []*story) {
	byStatus := func(ok func(*story) bool) []*story {
		var out []*story
		for _, s := range stories {
			if ok(s) {
				out = append(out, s)
			}
		}
		return out
	}
	engaged := byStatus(func(s *story) bool { return s.status != ips.ClientReferred })

	// Jobs first: their end reasons, several jobs for some clients, then the
	// employment statuses they imply.
	reasons := map[ips.JobEndReason]int{}
	var ended []*ips.Job
	for _, s := range engaged {
		for _, j := range s.c.Jobs {
			if !j.Current() {
				reasons[j.EndReason]++
				ended = append(ended, j)
			}
		}
	}
	for _, want := range ips.JobEndReasons {
		if reasons[want] > 0 {
			continue
		}
		var cands []*ips.Job
		for _, j := range ended {
			if j.EndReason == "" || reasons[j.EndReason] > 1 {
				cands = append(cands, j)
			}
		}
		if len(cands) > 0 {
			j := pick(g, cands)
			reasons[j.EndReason]--
			j.EndReason = want
		} else {
			ended = append(ended, g.addEndedJob(pick(g, engaged), want))
		}
		reasons[want]++
	}
	multi := byStatus(func(s *story) bool { return len(s.c.Jobs) > 1 })
	for len(multi) < 2 {
		cands := byStatus(func(s *story) bool { return s.status != ips.ClientReferred && len(s.c.Jobs) == 1 })
		if len(cands) == 0 {
			cands = engaged
		}
		s := pick(g, cands)
		g.addEndedJob(s, weighted(g, ips.JobEndReasons, endReasonWeights))
		if len(s.c.Jobs) > 1 {
			multi = append(multi, s)
		}
	}
	for _, s := range engaged {
		g.primaryGoalStatus(s) // the jobs may have changed
	}
	for _, want := range ips.EmploymentStatuses {
		if g.hasEmploymentStatus(stories, want) {
			continue
		}
		var cands []*story
		for _, s := range stories {
			switch want {
			case ips.Employed:
				if s.workedDuring() != nil {
					cands = append(cands, s)
				}
			default:
				was := s.nilf
				s.nilf = want == ips.NotInLaborForce
				if s.statusOn(s.c.EnrolledOn) == want {
					cands = append(cands, s)
				}
				s.nilf = was
			}
		}
		s := pick(g, cands)
		s.records = true
		if want != ips.Employed {
			s.nilf = want == ips.NotInLaborForce
		}
	}

	// Goals: a lifecycle status missing gets a goal of its own; an
	// achievement missing is given to a goal that can carry it.
	goalStatus := map[ips.GoalStatus]bool{}
	achievement := map[ips.GoalAchievement]int{}
	for _, s := range stories {
		for _, goal := range s.c.Goals {
			goalStatus[goal.Status] = true
			achievement[goal.Achievement]++
		}
	}
	for _, want := range ips.GoalStatuses {
		if goalStatus[want] {
			continue
		}
		s := g.leastGoals(byStatus(func(s *story) bool { return goalStatusFits(s.status, want) }))
		goal := g.addGoal(s, want, "")
		achievement[goal.Achievement]++
	}
	for _, want := range ips.GoalAchievements {
		if achievement[want] > 0 {
			continue
		}
		var cands []*ips.Goal
		for _, s := range stories {
			for _, goal := range s.c.Goals {
				if achievementFits(goal.Status, want) && (goal.Achievement == "" || achievement[goal.Achievement] > 1) {
					cands = append(cands, goal)
				}
			}
		}
		if len(cands) > 0 {
			goal := pick(g, cands)
			achievement[goal.Achievement]--
			goal.Achievement = want
		} else {
			var statuses []ips.GoalStatus
			for _, gs := range ips.GoalStatuses {
				if achievementFits(gs, want) {
					statuses = append(statuses, gs)
				}
			}
			gs := pick(g, statuses)
			g.addGoal(g.leastGoals(byStatus(func(s *story) bool { return goalStatusFits(s.status, gs) })), gs, want)
		}
		achievement[want]++
	}

	// Supports: every type, then every status.
	types := map[ips.SupportType]bool{}
	statuses := map[ips.SupportStatus]bool{}
	for _, s := range stories {
		for _, sp := range s.c.Supports {
			types[sp.Type] = true
			statuses[sp.Status] = true
		}
	}
	for _, want := range ips.SupportTypes {
		if types[want] {
			continue
		}
		cands := engaged
		onJob := want == ips.SupportFollowAlongOnJob || want == ips.SupportFollowAlongOffJob
		if onJob {
			cands = byStatus(func(s *story) bool { return s.workedDuring() != nil })
		}
		s := pick(g, cands)
		from := s.c.EnrolledOn
		until := s.last
		if onJob {
			j := s.workedDuring()
			if from.Before(j.Start) {
				from = j.Start
			}
			if !j.Current() {
				until = minDate(j.End, until)
			}
		}
		sp := g.support(s, want, ips.SupportCompleted, from.AddDays(g.between(0, max(0, days(from, until)))), s.primary)
		statuses[sp.Status] = true
	}
	for _, want := range ips.SupportStatuses {
		if statuses[want] {
			continue
		}
		switch want {
		case ips.SupportPlanned:
			s := pick(g, byStatus(func(s *story) bool { return s.status == ips.ClientActive || s.status == ips.ClientReferred }))
			g.support(s, ips.SupportTeamMeeting, want, g.asOf.AddDays(g.between(1, 21)), nil)
		case ips.SupportInProgress:
			s := pick(g, byStatus(func(s *story) bool { return s.status == ips.ClientActive }))
			g.support(s, ips.SupportBenefitsPlanning, want, g.asOf.AddDays(-g.between(0, min(13, days(s.c.EnrolledOn, g.asOf)))), s.primary)
		default:
			s := pick(g, engaged)
			g.support(s, ips.SupportTeamMeeting, want, s.c.EnrolledOn.AddDays(g.between(0, days(s.c.EnrolledOn, s.last))), nil)
		}
	}

	// Disclosure: a choice missing is given to a client whose jobs agree.
	count := map[ips.Disclosure]int{}
	for _, s := range stories {
		count[s.c.Disclosure]++
	}
	for _, want := range disclosures {
		if count[want] > 0 {
			continue
		}
		var cands []*story
		for _, s := range stories {
			if s.c.Disclosure == "" || count[s.c.Disclosure] > 1 {
				cands = append(cands, s)
			}
		}
		s := pick(g, cands)
		count[s.c.Disclosure]--
		s.c.Disclosure = want
		count[want]++
		for _, j := range s.c.Jobs {
			if j.Disclosed != nil {
				j.Disclosed = ptr(want != ips.DisclosureNone && (want == ips.DisclosureFull || *j.Disclosed))
			}
		}
	}
}

// leastGoals picks one of the stories with the fewest goals, so patched-in
// goals spread over the caseload.
func (g *gen) leastGoals(stories []*story) *story {
	fewest := slices.MinFunc(stories, func(a, b *story) int { return len(a.c.Goals) - len(b.c.Goals) })
	var cands []*story
	for _, s := range stories {
		if len(s.c.Goals) == len(fewest.c.Goals) {
			cands = append(cands, s)
		}
	}
	return pick(g, cands)
}

// workedDuring returns a job the client held while enrolled, or nil.
func (s *story) workedDuring() *ips.Job {
	for _, j := range s.c.Jobs {
		if j.Overlaps(s.c.EnrolledOn, s.last) {
			return j
		}
	}
	return nil
}

func (g *gen) hasEmploymentStatus(stories []*story, want ips.EmploymentStatus) bool {
	for _, s := range stories {
		if !s.records {
			continue
		}
		for _, snap := range s.snapshots() {
			if snap.Status == want {
				return true
			}
		}
	}
	return false
}

// addEndedJob adds a job that ended for reason, in the widest stretch of the
// enrollment without a job, so it rarely overlaps another.
func (g *gen) addEndedJob(s *story, reason ips.JobEndReason) *ips.Job {
	from, to := s.widestGap()
	span := max(0, days(from, to))
	start := from.AddDays(g.between(0, span/2))
	// End a day before the gap does, so the status snapshot after it fits.
	end := start.AddDays(g.between(min(7, span), max(min(7, span), min(120, days(start, to)-1))))
	if to.Before(end) {
		end = to
	}
	k := s.kind
	if reason == "temporary-job-ended" && g.chance(0.5) {
		k = nonCompetitiveKinds[len(nonCompetitiveKinds)-1]
	}
	j := &ips.Job{
		Employer: pick(g, k.employers), Title: k.title, Start: start, End: end, EndReason: reason,
		HoursPerWeek: g.hours(), Competitive: k.competitive,
		HourlyWage: ips.Money{Value: float64(g.between(k.wageCents[0]/25, k.wageCents[1]/25)*25) / 100, Currency: "USD"},
	}
	s.c.Jobs = append(s.c.Jobs, j)
	return j
}

// widestGap returns the longest stretch from enrollment to s.last in which the
// client held no job (just the enrollment day if there is none).
func (s *story) widestGap() (from, to ips.Date) {
	e, last := s.c.EnrolledOn, s.last
	type span struct{ from, to ips.Date }
	var held []span
	for _, j := range s.c.Jobs {
		end := last
		if !j.Current() {
			end = j.End
		}
		held = append(held, span{j.Start, end})
	}
	slices.SortFunc(held, func(a, b span) int { return a.from.Compare(b.from) })
	from, to = e, e
	best := -1
	consider := func(a, b ips.Date) {
		if d := days(a, b); !b.Before(a) && d > best {
			from, to, best = a, b, d
		}
	}
	cur := e
	for _, h := range held {
		if cur.Before(h.from) {
			consider(cur, h.from.AddDays(-1))
		}
		if next := h.to.AddDays(1); cur.Before(next) {
			cur = next
		}
	}
	consider(cur, last)
	return from, to
}
