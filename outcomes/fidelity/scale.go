package fidelity

// QuestionnaireURL and QuestionnaireVersion name the published Questionnaire a
// review answers. A response's questionnaire must be the URL, optionally with
// "|" and this version.
const (
	QuestionnaireURL     = "https://ipsfhir.org/fhir/Questionnaire/ips-fidelity-25"
	QuestionnaireVersion = "0.1.0"
)

// Caveat travels with every Summary, so a report cannot show the score
// without it.
const Caveat = "IPS-25 fidelity item names O1-O8 and SV1-SV14 and the band cut-offs other than Fair (74-99) " +
	"are [unconfirmed] against the Supported Employment Fidelity Review Manual, 4th ed. (IPS Employment Center, 2019)."

// Lowest and highest rating of an item, and the range of a total.
const (
	MinRating = 1
	MaxRating = 5
	MinTotal  = MinRating * 25
	MaxTotal  = MaxRating * 25
)

// Section is one of the scale's three sections, by the linkId of its group
// in the Questionnaire.
type Section string

// The sections, in the scale's order.
const (
	Staffing     Section = "staffing"
	Organization Section = "organization"
	Services     Section = "services"
)

// Title is the section's name as the Questionnaire shows it.
func (s Section) Title() string {
	switch s {
	case Staffing:
		return "Staffing"
	case Organization:
		return "Organization"
	case Services:
		return "Services"
	}
	return ""
}

// Sections lists the sections in the scale's order.
func Sections() []Section { return []Section{Staffing, Organization, Services} }

// Item is one rated item of the scale.
type Item struct {
	LinkID  string  // "S1" … "SV14", the item's linkId in the Questionnaire
	Section Section // the group it belongs to
	Text    string  // short name; [unconfirmed] for O1–SV14 (see Caveat)
}

// scale is the one table of the 25 items. S1–S3 are confirmed against the
// 2008 form; the rest are [unconfirmed] (see Caveat).
var scale = [...]Item{
	{"S1", Staffing, "Caseload size"},
	{"S2", Staffing, "Employment services staff (vocational services staff)"},
	{"S3", Staffing, "Vocational generalists"},
	{"O1", Organization, "Integration of rehabilitation with mental health treatment through team assignment"},
	{"O2", Organization, "Integration of rehabilitation with mental health treatment through frequent team member contact"},
	{"O3", Organization, "Collaboration between employment specialists and Vocational Rehabilitation counselors"},
	{"O4", Organization, "Vocational unit"},
	{"O5", Organization, "Role of employment supervisor"},
	{"O6", Organization, "Zero exclusion criteria"},
	{"O7", Organization, "Agency focus on competitive employment"},
	{"O8", Organization, "Executive team support for SE"},
	{"SV1", Services, "Work incentives planning"},
	{"SV2", Services, "Disclosure"},
	{"SV3", Services, "Ongoing, work-based vocational assessment"},
	{"SV4", Services, "Rapid search for competitive job"},
	{"SV5", Services, "Individualized job search"},
	{"SV6", Services, "Job development – frequent employer contact"},
	{"SV7", Services, "Job development – quality of employer contact"},
	{"SV8", Services, "Diversity of job types"},
	{"SV9", Services, "Diversity of employers"},
	{"SV10", Services, "Competitive jobs"},
	{"SV11", Services, "Individualized follow-along supports"},
	{"SV12", Services, "Time-unlimited follow-along supports"},
	{"SV13", Services, "Community-based services"},
	{"SV14", Services, "Assertive engagement and outreach by integrated treatment team"},
}

// Items lists the 25 items in the scale's order.
func Items() []Item { return append([]Item(nil), scale[:]...) }

// itemByLinkID finds an item of the scale.
func itemByLinkID(linkID string) (Item, bool) {
	for _, it := range scale {
		if it.LinkID == linkID {
			return it, true
		}
	}
	return Item{}, false
}

// Band is the fidelity level a total falls in, as a stable code; String gives
// its label.
type Band string

// The bands, best first.
const (
	Exemplary              Band = "exemplary"
	Good                   Band = "good"
	Fair                   Band = "fair"
	NotSupportedEmployment Band = "not-supported-employment"
)

// Lowest total of each band above the bottom one. Only Fair's range (74–99)
// is confirmed; see Caveat.
const (
	minExemplary = 115
	minGood      = 100
	minFair      = 74
)

// BandFor returns the band of a total: 115 and up Exemplary, 100–114 Good,
// 74–99 Fair, 73 and below Not supported employment.
func BandFor(total int) Band {
	switch {
	case total >= minExemplary:
		return Exemplary
	case total >= minGood:
		return Good
	case total >= minFair:
		return Fair
	}
	return NotSupportedEmployment
}

// String is the band's label: "Exemplary fidelity", "Good fidelity", "Fair
// fidelity" or "Not supported employment".
func (b Band) String() string {
	switch b {
	case Exemplary:
		return "Exemplary fidelity"
	case Good:
		return "Good fidelity"
	case Fair:
		return "Fair fidelity"
	case NotSupportedEmployment:
		return "Not supported employment"
	}
	return string(b)
}
