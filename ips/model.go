package ips

// Caseload is the content of a caseload JSON file: one program's clients.
type Caseload struct {
	Program *Program  `json:"program,omitempty"`
	Clients []*Client `json:"clients"`
}

// Program names the IPS program a caseload belongs to.
type Program struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// DefaultProgramID scopes business identifiers when a caseload names no program.
const DefaultProgramID = "local"

// ProgramID returns the program's id, or DefaultProgramID when none is set.
func (c *Caseload) ProgramID() string {
	if c.Program == nil || c.Program.ID == "" {
		return DefaultProgramID
	}
	return c.Program.ID
}

// Identifier is an identifier in a namespace, such as a patient's MRN in the
// clinic EHR. Both parts are patient data.
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// Coding is a code from a code system, as in FHIR.
type Coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Client is one person in the IPS program. IPS has zero exclusion: anyone
// who wants to work is eligible, so there is no eligibility field.
//
// A person may be in the program more than once: referred, enrolled,
// discharged, and referred again. Each time is an enrollment episode. The
// client's own dates, status and referral are the current (latest)
// episode; PastEpisodes are the earlier ones, all closed. Goals, supports,
// jobs and status snapshots belong to the person, not to an episode.
type Client struct {
	ID      string     `json:"id"`
	Patient Identifier `json:"patient"`
	// EnrolledOn is the day a specialist accepted the client onto the
	// caseload. It is unset only while the client is referred and not yet
	// accepted, or when a referral was closed without enrollment.
	EnrolledOn Date `json:"enrolledOn,omitzero"`
	ReferredOn Date `json:"referredOn,omitzero"`
	// Referral is where the current episode's referral came from, when it
	// came from an EHR.
	Referral *ReferralSource `json:"referral,omitempty"`
	ClosedOn Date            `json:"closedOn,omitzero"`
	// ClosedReason says, in the specialist's words, why the client left the
	// program ("working steadily; follow-along passed to the team").
	ClosedReason string       `json:"closedReason,omitempty"`
	Status       ClientStatus `json:"status,omitempty"`
	// PastEpisodes are the client's earlier enrollment episodes, all
	// closed, oldest first, each ending on or before the next begins.
	PastEpisodes []*Episode `json:"pastEpisodes,omitempty"`
	Specialist   string     `json:"specialist,omitempty"`
	// SpecialistContact is how clinicians reach the employment specialist
	// (a work phone or email). It is staff data, shown in the chart.
	SpecialistContact string               `json:"specialistContact,omitempty"`
	Consent           *Consent             `json:"consent,omitempty"`
	Disclosure        Disclosure           `json:"disclosure,omitempty"`
	Preferences       *WorkPreferences     `json:"preferences,omitempty"`
	Goals             []*Goal              `json:"goals,omitempty"`
	Supports          []*Support           `json:"supports,omitempty"`
	Jobs              []*Job               `json:"jobs,omitempty"`
	Employment        []EmploymentSnapshot `json:"employmentStatus,omitempty"`
}

// EffectiveStatus is the client's status with the documented default applied:
// closed when a closing date is set, active otherwise.
func (c *Client) EffectiveStatus() ClientStatus {
	if c.Status != "" {
		return c.Status
	}
	if !c.ClosedOn.IsZero() {
		return ClientClosed
	}
	return ClientActive
}

// Episode is one closed enrollment episode of a client: from the referral
// (or, without one, the enrollment) to the closure. EnrolledOn is unset for
// a referral that was closed without enrollment.
type Episode struct {
	ReferredOn   Date            `json:"referredOn,omitzero"`
	Referral     *ReferralSource `json:"referral,omitempty"`
	EnrolledOn   Date            `json:"enrolledOn,omitzero"`
	ClosedOn     Date            `json:"closedOn"`
	ClosedReason string          `json:"closedReason,omitempty"`
}

// ReferralSource names the EHR referral an episode began with: the
// connection it was read from and the ServiceRequest's id there. Both are
// identifiers of the EHR, not the patient's.
type ReferralSource struct {
	Connection     string `json:"connection"`
	ServiceRequest string `json:"serviceRequest"`
}

// CurrentEpisode returns the client's own (latest) episode as an Episode.
func (c *Client) CurrentEpisode() Episode {
	return Episode{ReferredOn: c.ReferredOn, Referral: c.Referral, EnrolledOn: c.EnrolledOn, ClosedOn: c.ClosedOn, ClosedReason: c.ClosedReason}
}

// Enrollments returns every episode in which the client was enrolled, the
// past ones and then the current one (unless the client is referred and
// not yet accepted), oldest first. Each has an EnrolledOn; ClosedOn is
// unset for a current episode that is still open.
func (c *Client) Enrollments() []Episode {
	var out []Episode
	for _, e := range c.PastEpisodes {
		if e != nil && !e.EnrolledOn.IsZero() {
			out = append(out, *e)
		}
	}
	if !c.EnrolledOn.IsZero() && c.EffectiveStatus() != ClientReferred {
		out = append(out, c.CurrentEpisode())
	}
	return out
}

// Rereferred reports whether the client is referred and waiting for
// acceptance after an earlier episode: a referral of a former client.
func (c *Client) Rereferred() bool {
	return c.EffectiveStatus() == ClientReferred && len(c.PastEpisodes) > 0
}

// Goal finds the client's goal with the given id, or nil.
func (c *Client) Goal(id string) *Goal {
	for _, g := range c.Goals {
		if g.ID == id {
			return g
		}
	}
	return nil
}

// ClientStatus is where a client stands in the program.
type ClientStatus string

// Client statuses.
const (
	ClientReferred ClientStatus = "referred"
	ClientActive   ClientStatus = "active"
	ClientOnHold   ClientStatus = "on-hold"
	ClientClosed   ClientStatus = "closed"
)

// Consent records what the client agreed to share. A nil field means the
// program's configured default applies.
type Consent struct {
	EHR *bool `json:"ehr,omitempty"`
	HIE *bool `json:"hie,omitempty"`
}

// Disclosure is the client's choice about telling employers of the condition.
type Disclosure string

// Disclosure preferences.
const (
	DisclosureNone      Disclosure = "none"
	DisclosurePartial   Disclosure = "partial"
	DisclosureFull      Disclosure = "full"
	DisclosureUndecided Disclosure = "undecided"
)

// WorkPreferences are the client's own preferences, which IPS job search follows.
type WorkPreferences struct {
	JobTypes     []string `json:"jobTypes,omitempty"`
	HoursPerWeek *float64 `json:"hoursPerWeek,omitempty"`
	Schedule     string   `json:"schedule,omitempty"`
	Location     string   `json:"location,omitempty"`
}

// Goal is an employment goal in the client's own words.
type Goal struct {
	ID                 string          `json:"id"`
	Description        string          `json:"description"`
	Status             GoalStatus      `json:"status"`
	Achievement        GoalAchievement `json:"achievement,omitempty"`
	TargetHoursPerWeek *float64        `json:"targetHoursPerWeek,omitempty"`
	Start              Date            `json:"start"`
	Due                Date            `json:"due,omitzero"`
	Notes              []Note          `json:"notes,omitempty"`
}

// Note is free text about a record, such as a clinician's comment on a goal.
type Note struct {
	Text string `json:"text"`
	Date Date   `json:"date,omitzero"`
	// Source names the EHR connection whose clinicians wrote the note, as
	// a pull took it from that EHR; empty for the program's own notes. A
	// sourced note goes back to that connection's EHR only, unless the
	// connection shares its clinical text (config clinicalText).
	Source string `json:"source,omitempty"`
}

// SameText reports whether two notes say the same as an EHR holds them:
// text and date, whoever wrote them (Source is not in FHIR).
func (n Note) SameText(o Note) bool { return n.Text == o.Text && n.Date == o.Date }

// GoalStatus is a FHIR Goal lifecycleStatus code.
type GoalStatus string

// Goal lifecycle statuses (http://hl7.org/fhir/goal-status).
const (
	GoalProposed       GoalStatus = "proposed"
	GoalPlanned        GoalStatus = "planned"
	GoalAccepted       GoalStatus = "accepted"
	GoalActive         GoalStatus = "active"
	GoalOnHold         GoalStatus = "on-hold"
	GoalCompleted      GoalStatus = "completed"
	GoalCancelled      GoalStatus = "cancelled"
	GoalEnteredInError GoalStatus = "entered-in-error"
	GoalRejected       GoalStatus = "rejected"
)

// GoalStatuses lists every GoalStatus.
var GoalStatuses = []GoalStatus{GoalProposed, GoalPlanned, GoalAccepted, GoalActive, GoalOnHold, GoalCompleted, GoalCancelled, GoalEnteredInError, GoalRejected}

// GoalAchievement is a FHIR Goal achievementStatus code
// (http://terminology.hl7.org/CodeSystem/goal-achievement).
type GoalAchievement string

// GoalAchievements lists every GoalAchievement.
var GoalAchievements = []GoalAchievement{"in-progress", "improving", "worsening", "no-change", "achieved", "sustaining", "not-achieved", "no-progress", "not-attainable"}

// Support is one IPS service given to, or planned with, the client.
type Support struct {
	ID     string        `json:"id"`
	Type   SupportType   `json:"type"`
	Status SupportStatus `json:"status"`
	Date   Date          `json:"date"`
	Goal   string        `json:"goal,omitempty"`
	Note   string        `json:"note,omitempty"`
	// Contact says how a contact with an employer was made and on whose
	// behalf; only employer-contact and job-development supports carry it.
	// Rapid job search (fidelity item SV4) counts the first face-to-face
	// contact with an employer on the client's behalf.
	Contact *Contact `json:"contact,omitempty"`
}

// Contact describes a support that was a contact with an employer.
type Contact struct {
	Mode ContactMode `json:"mode"`
	// OnBehalfOf is "client" when the contact was about work for this
	// client, "program" when it was the program's own (learning an
	// employer's needs, no client named). Empty: not recorded.
	OnBehalfOf ContactBehalf `json:"onBehalfOf,omitempty"`
}

// ContactMode is how a contact with an employer was made.
type ContactMode string

// Contact modes.
const (
	ContactFaceToFace ContactMode = "face-to-face"
	ContactPhone      ContactMode = "phone"
	ContactVideo      ContactMode = "video"
	ContactWritten    ContactMode = "written"
)

// ContactBehalf is on whose behalf a contact with an employer was made.
type ContactBehalf string

// Contact behalves.
const (
	ContactForClient  ContactBehalf = "client"
	ContactForProgram ContactBehalf = "program"
)

// CountsAsEmployerContact reports whether the support is a contact with an
// employer that rapid job search counts (fidelity item SV4: face to face,
// on the client's behalf): an employer-contact or job-development support
// recorded as face to face and not on the program's own behalf. An
// employer-contact support with no contact recorded counts too, as it did
// before the contact was recorded (caseloads written then say nothing
// about it); one recorded as by phone, video or in writing does not.
func (s *Support) CountsAsEmployerContact() bool {
	switch {
	case s.Type != SupportEmployerContact && s.Type != SupportJobDevelopment:
		return false
	case s.Contact == nil:
		return s.Type == SupportEmployerContact
	}
	return s.Contact.Mode == ContactFaceToFace && s.Contact.OnBehalfOf != ContactForProgram
}

// SupportType is a code of the project's IPS support-type CodeSystem.
type SupportType string

// IPS support types.
const (
	SupportCareerProfile        SupportType = "career-profile"
	SupportJobDevelopment       SupportType = "job-development"
	SupportEmployerContact      SupportType = "employer-contact"
	SupportBenefitsPlanning     SupportType = "benefits-planning"
	SupportDisclosurePlanning   SupportType = "disclosure-planning"
	SupportInterviewPreparation SupportType = "interview-preparation"
	SupportFollowAlongOnJob     SupportType = "follow-along-on-job"
	SupportFollowAlongOffJob    SupportType = "follow-along-off-job"
	SupportTransportation       SupportType = "transportation"
	SupportEducation            SupportType = "education-support"
	SupportTeamMeeting          SupportType = "team-meeting"
)

// SupportTypes lists every SupportType.
var SupportTypes = []SupportType{SupportCareerProfile, SupportJobDevelopment, SupportEmployerContact, SupportBenefitsPlanning, SupportDisclosurePlanning, SupportInterviewPreparation, SupportFollowAlongOnJob, SupportFollowAlongOffJob, SupportTransportation, SupportEducation, SupportTeamMeeting}

// SupportStatus is where a support stands.
type SupportStatus string

// Support statuses.
const (
	SupportPlanned    SupportStatus = "planned"
	SupportInProgress SupportStatus = "in-progress"
	SupportCompleted  SupportStatus = "completed"
	SupportCancelled  SupportStatus = "cancelled"
)

// SupportStatuses lists every SupportStatus.
var SupportStatuses = []SupportStatus{SupportPlanned, SupportInProgress, SupportCompleted, SupportCancelled}

// Job is a job the client holds or held.
type Job struct {
	ID           string       `json:"id"`
	Employer     string       `json:"employer"`
	Title        string       `json:"title"`
	Occupation   *Coding      `json:"occupation,omitempty"`
	Industry     *Coding      `json:"industry,omitempty"`
	Start        Date         `json:"start"`
	End          Date         `json:"end,omitzero"`
	EndReason    JobEndReason `json:"endReason,omitempty"`
	HoursPerWeek float64      `json:"hoursPerWeek"`
	DaysPerWeek  int          `json:"daysPerWeek,omitempty"`
	HourlyWage   Money        `json:"hourlyWage"`
	Competitive  bool         `json:"competitive"`
	Disclosed    *bool        `json:"disclosed,omitempty"`
}

// Current reports whether the job has not ended.
func (j *Job) Current() bool { return j.End.IsZero() }

// Overlaps reports whether the job was held on any day from from to to inclusive.
func (j *Job) Overlaps(from, to Date) bool {
	if to.Before(j.Start) {
		return false
	}
	return j.Current() || !j.End.Before(from)
}

// Money is an amount in an ISO 4217 currency.
type Money struct {
	Value    float64 `json:"value"`
	Currency string  `json:"currency"`
}

// JobEndReason says why a job ended.
type JobEndReason string

// JobEndReasons lists every JobEndReason.
var JobEndReasons = []JobEndReason{"quit-with-plan", "quit-without-plan", "fired", "laid-off", "temporary-job-ended", "hospitalized", "other"}

// EmploymentSnapshot is the client's employment status as of a date; it holds
// until the next snapshot.
type EmploymentSnapshot struct {
	Date   Date             `json:"date"`
	Status EmploymentStatus `json:"status"`
}

// EmploymentStatus is the labour-force status of a client.
type EmploymentStatus string

// Employment statuses.
const (
	Employed        EmploymentStatus = "employed"
	Unemployed      EmploymentStatus = "unemployed"
	NotInLaborForce EmploymentStatus = "not-in-labor-force"
)

// EmploymentStatuses lists every EmploymentStatus.
var EmploymentStatuses = []EmploymentStatus{Employed, Unemployed, NotInLaborForce}
