package synth

import "github.com/ipsfhir/ipsfhir/ips"

// Code systems of the ODH occupation and industry value sets (Census 2010 and
// ODH detail), so generated jobs carry codings shaped like an EHR's.
const (
	systemCensusOccupation = "http://terminology.hl7.org/CodeSystem/PHOccupationCDCCensus2010"
	systemCensusIndustry   = "http://terminology.hl7.org/CodeSystem/PHIndustryCDCCensus2010"
	systemODH              = "http://terminology.hl7.org/CodeSystem/PHOccupationalDataForHealthODH"
)

// jobKind is a kind of work clients ask for and get: what a job of this kind
// is called, how it is coded and paid, who hires for it, and how a client
// might put wanting it in their own words.
type jobKind struct {
	pref        string // as a client's job-type preference
	title       string
	occupation  *ips.Coding
	industry    *ips.Coding
	employers   []string
	wageCents   [2]int // hourly, low and high
	competitive bool
	fixedDays   int // a time-limited placement ends after this many days
	goals       []string
}

func occ(code, display string) *ips.Coding {
	return &ips.Coding{System: systemCensusOccupation, Code: code, Display: display}
}

func ind(code, display string) *ips.Coding {
	return &ips.Coding{System: systemCensusIndustry, Code: code, Display: display}
}

// kinds lists competitive work first; the last entries are the agency-run,
// non-competitive placements IPS steers away from but clients still hold.
var kinds = []*jobKind{
	{pref: "bakery", title: "Baker's assistant", occupation: occ("7800", "Bakers"), industry: ind("1190", "Retail bakeries"),
		employers: []string{"Sunrise Bakery", "Golden Crust Bakery", "Riverside Bread Co."}, wageCents: [2]int{1300, 1700}, competitive: true,
		goals: []string{"I want to work part time at a bakery, mornings", "Bake bread again like I did at my uncle's shop", "Work in a bakery where it smells good and it's early hours"}},
	{pref: "food service", title: "Dishwasher", occupation: occ("4140", "Dishwashers"), industry: ind("8680", "Restaurants and other food services"),
		employers: []string{"Blue Heron Diner", "Lakeside Grill", "Casa Verde Restaurant"}, wageCents: [2]int{1300, 1650}, competitive: true,
		goals: []string{"Get a kitchen job, I don't mind washing dishes", "Work at a restaurant on weekends", "I want a job where I don't have to talk to customers much"}},
	{pref: "food service", title: "Line cook", occupation: occ("4020", "Cooks"), industry: ind("8680", "Restaurants and other food services"),
		employers: []string{"Lakeside Grill", "Blue Heron Diner", "Mama Rosa's Trattoria"}, wageCents: [2]int{1500, 2000}, competitive: true,
		goals: []string{"Go back to cooking, I used to be a line cook", "Cook at a real restaurant, not fast food"}},
	{pref: "coffee shop", title: "Barista", occupation: occ("4060", "Counter attendants, cafeteria, food concession, and coffee shop"), industry: ind("8680", "Restaurants and other food services"),
		employers: []string{"Bean There Coffee", "Morning Cup Café", "Riverside Roasters"}, wageCents: [2]int{1250, 1600}, competitive: true,
		goals: []string{"Work at a coffee shop a few mornings a week", "I'd like to learn to make espresso and work at a café"}},
	{pref: "grocery", title: "Cashier", occupation: occ("4720", "Cashiers"), industry: ind("4970", "Grocery stores"),
		employers: []string{"Maple Street Market", "FreshWay Grocery", "Hilltop Foods"}, wageCents: [2]int{1300, 1600}, competitive: true,
		goals: []string{"Find a cashier job close to home, about 20 hours a week", "Work at the grocery store near my apartment"}},
	{pref: "grocery", title: "Stocker", occupation: occ("5620", "Stock clerks and order fillers"), industry: ind("4970", "Grocery stores"),
		employers: []string{"FreshWay Grocery", "Maple Street Market", "Hilltop Foods"}, wageCents: [2]int{1400, 1750}, competitive: true,
		goals: []string{"Stock shelves at night when it's quiet", "I want to keep busy with my hands, stocking or something like it"}},
	{pref: "retail", title: "Sales associate", occupation: occ("4760", "Retail salespersons"),
		employers: []string{"Thrift Corner", "Hometown Hardware", "Second Chance Books", "Value Mart"}, wageCents: [2]int{1300, 1700}, competitive: true,
		goals: []string{"Work in a store, maybe the hardware store, I know tools", "Get a retail job and save up for my own apartment"}},
	{pref: "warehouse", title: "Warehouse associate", occupation: occ("9620", "Laborers and freight, stock, and material movers, hand"), industry: ind("6390", "Warehousing and storage"),
		employers: []string{"Harbor Logistics", "Tri-County Distribution Center", "Northgate Fulfillment"}, wageCents: [2]int{1600, 2100}, competitive: true,
		goals: []string{"Get a full-time job in a warehouse so I can pay my own rent", "Work second shift at the distribution center like my brother"}},
	{pref: "cleaning", title: "Janitor", occupation: occ("4220", "Janitors and building cleaners"), industry: ind("7690", "Services to buildings and dwellings"),
		employers: []string{"Spotless Building Services", "BrightPath Janitorial", "Riverside Community College"}, wageCents: [2]int{1350, 1800}, competitive: true,
		goals: []string{"Clean offices in the evening when nobody's around", "I want steady work, cleaning is fine with me"}},
	{pref: "cleaning", title: "Housekeeper", occupation: occ("4230", "Maids and housekeeping cleaners"), industry: ind("8660", "Traveler accommodation"),
		employers: []string{"Riverview Inn", "Parkside Motel"}, wageCents: [2]int{1300, 1600}, competitive: true,
		goals: []string{"Housekeeping at a hotel, I like things neat"}},
	{pref: "outdoor work", title: "Groundskeeper", occupation: occ("4250", "Grounds maintenance workers"), industry: ind("7770", "Landscaping services"),
		employers: []string{"Green Acres Landscaping", "City Parks Department", "Evergreen Lawn Care"}, wageCents: [2]int{1500, 1900}, competitive: true,
		goals: []string{"I'd like a job where I can be outside, like landscaping", "Work outdoors, being inside all day makes my anxiety worse"}},
	{pref: "animals", title: "Kennel attendant", occupation: occ("4350", "Nonfarm animal caretakers"), industry: ind("9090", "Other personal services"),
		employers: []string{"Happy Tails Pet Resort", "County Animal Shelter", "Paws & Claws Grooming"}, wageCents: [2]int{1300, 1650}, competitive: true,
		goals: []string{"I want to work with animals, maybe at a shelter or pet store", "Take care of dogs, they calm me down"}},
	{pref: "health care", title: "Certified nursing assistant", occupation: &ips.Coding{System: systemODH, Code: "31-1014.00.007136", Display: "Certified Nursing Assistant (CNA) [Nursing Assistants]"}, industry: ind("8270", "Nursing care facilities"),
		employers: []string{"Oak Grove Care Center", "Willow Creek Senior Living"}, wageCents: [2]int{1650, 2150}, competitive: true,
		goals: []string{"Be a CNA like my mom, I already have my certificate", "Go back to work helping older people"}},
	{pref: "office work", title: "Office clerk", occupation: occ("5860", "Office clerks, general"),
		employers: []string{"Riverside Dental Group", "Parkway Insurance Agency", "Lincoln Law Office"}, wageCents: [2]int{1550, 2100}, competitive: true,
		goals: []string{"I want an office job, something quiet", "Do filing and data entry, I'm good with details"}},
	{pref: "customer service", title: "Customer service representative", occupation: occ("5240", "Customer service representatives"), industry: ind("7590", "Business support services"),
		employers: []string{"Northwind Call Center", "Riverside Utilities"}, wageCents: [2]int{1700, 2200}, competitive: true,
		goals: []string{"Work from a desk helping people on the phone", "Get a full-time job with benefits"}},
	{pref: "library", title: "Library page", occupation: occ("5320", "Library assistants, clerical"), industry: ind("6770", "Libraries and archives"),
		employers: []string{"Riverside Public Library", "Riverside Community College Library"}, wageCents: [2]int{1400, 1700}, competitive: true,
		goals: []string{"I want to work at the library, I like books", "Shelve books a few hours a week"}},
	{pref: "computers", title: "Help desk technician", occupation: occ("1050", "Computer support specialists"), industry: ind("7870", "Colleges and universities, including junior colleges"),
		employers: []string{"Riverside Community College", "TechFix Repair"}, wageCents: [2]int{1900, 2800}, competitive: true,
		goals: []string{"Learn computers and help people with tech problems", "Use my IT background again, I worked help desk before I got sick"}},
	{pref: "child care", title: "Teacher's aide", occupation: occ("2540", "Teacher assistants"), industry: ind("7860", "Elementary and secondary schools"),
		employers: []string{"Lincoln Elementary School", "Little Sprouts Child Care"}, wageCents: [2]int{1500, 1900}, competitive: true,
		goals: []string{"Work with kids, maybe as a teacher's aide", "Get a job during school hours so I can be home for my kids"}},
	{pref: "driving", title: "Delivery driver", occupation: occ("9130", "Driver/sales workers and truck drivers"), industry: ind("6380", "Couriers and messengers"),
		employers: []string{"Parcel Express", "Hilltop Foods"}, wageCents: [2]int{1700, 2300}, competitive: true,
		goals: []string{"Drive for a living, I have a clean license", "Earn enough to keep my car running"}},
	{pref: "auto", title: "Lube technician", occupation: occ("7200", "Automotive service technicians and mechanics"), industry: ind("8770", "Automotive repair and maintenance"),
		employers: []string{"Quick Lube Auto Care", "Sparkle Car Wash"}, wageCents: [2]int{1500, 2000}, competitive: true,
		goals: []string{"Work on cars, I fixed my own for years"}},
	{pref: "security", title: "Security guard", occupation: occ("3930", "Security guards and gaming surveillance officers"), industry: ind("7680", "Investigation and security services"),
		employers: []string{"Guardian Security Services"}, wageCents: [2]int{1600, 2000}, competitive: true,
		goals: []string{"Night security, I'm a night owl anyway"}},
	// Non-competitive: an agency sets the job aside for people with disabilities
	// or limits how long it lasts.
	{pref: "", title: "Packaging assembler (work center)", occupation: occ("8800", "Packaging and filling machine operators and tenders"),
		employers: []string{"Riverside Work Center"}, wageCents: [2]int{900, 1200}, competitive: false},
	{pref: "", title: "Transitional employment, mailroom", occupation: occ("5860", "Office clerks, general"),
		employers: []string{"Harbor House Clubhouse placement at Parkway Insurance Agency"}, wageCents: [2]int{1300, 1400}, competitive: false, fixedDays: 182},
}

// competitiveKinds are the kinds a client may name as their goal.
var competitiveKinds = func() []*jobKind {
	var out []*jobKind
	for _, k := range kinds {
		if k.competitive {
			out = append(out, k)
		}
	}
	return out
}()

var nonCompetitiveKinds = func() []*jobKind {
	var out []*jobKind
	for _, k := range kinds {
		if !k.competitive {
			out = append(out, k)
		}
	}
	return out
}()

// genericGoals fit any client; IPS goals need not name a job type.
var genericGoals = []string{
	"Work a few hours a week without losing my SSI",
	"Earn my own money again",
	"Start working again after being in the hospital",
	"Get a job so my kids see me working",
	"Save up for my own apartment",
	"Have somewhere to be during the day",
	"Find a job that works around my appointments",
	"Work part time, mornings, close to the bus line",
	"Get off disability someday, start small for now",
	"Earn enough to buy a car",
}

// laterGoals are what clients add once the first goal is underway or met.
type laterGoal struct {
	words   string
	hours   float64 // target hours a week, if the goal is about hours
	working bool    // only makes sense for someone who has a job
}

var laterGoals = []laterGoal{
	{words: "Keep my job and ask for more hours", hours: 25, working: true},
	{words: "Work up to 30 hours without losing Medicaid", hours: 30, working: true},
	{words: "Take a food handler's class"},
	{words: "Finish my GED"},
	{words: "Get my forklift certificate"},
	{words: "Learn to drive and get my license back"},
	{words: "Sign up for a class at the community college"},
	{words: "Find a second job for weekends", hours: 10, working: true},
	{words: "Get a better paying job in the same line of work", working: true},
}

var goalNotes = []string{
	"Client says this is still what they want.",
	"Revised: now wants evenings so they can attend group.",
	"Talked with the team psychiatrist about morning sedation.",
	"Resume finished with ES.",
	"Client wants to stay on the bus line.",
	"Benefits counselor reviewed the earnings limits with client.",
	"Client unsure after hospital stay; will revisit next month.",
	"Client wants to try a different kind of work.",
	"Family supportive of the goal.",
}

// supportNotes are chart-style remarks, by support type.
var supportNotes = map[ips.SupportType][]string{
	ips.SupportCareerProfile:        {"Career profile started at first meeting.", "Reviewed work history, strengths and what client enjoys.", "Talked with client's sister about past jobs, with permission."},
	ips.SupportJobDevelopment:       {"Visited three employers downtown.", "Met a hiring manager to learn about their needs.", "Second visit to the same employer; they may have an opening next month."},
	ips.SupportEmployerContact:      {"Face-to-face contact with the store manager on client's behalf.", "Client joined ES for a walk-in application.", "Employer asked for someone reliable for early shifts."},
	ips.SupportBenefitsPlanning:     {"Referred to a WIPA benefits counselor.", "Benefits summary: SSDI and Medicaid; reviewed Ticket to Work.", "Reported new earnings to Social Security."},
	ips.SupportDisclosurePlanning:   {"Client chose not to disclose; practiced explaining the gap in work history.", "Client wants ES to talk with the employer directly.", "Discussed pros and cons of disclosure."},
	ips.SupportInterviewPreparation: {"Mock interview with ES.", "Practiced answering questions about the work gap.", "Picked out interview clothes at the clothing bank."},
	ips.SupportFollowAlongOnJob:     {"Checked in at the job site with client's permission.", "Met the supervisor about a schedule change.", "Helped client learn the new register."},
	ips.SupportFollowAlongOffJob:    {"Met at a coffee shop after shift; client says it is going well.", "Helped with a conflict with a coworker.", "Talked through stress about the new schedule."},
	ips.SupportTransportation:       {"Planned the bus route to work together.", "Bus pass for the first month.", "Rode the route with client before the first day."},
	ips.SupportEducation:            {"Helped with the community college application.", "Financial aid form completed together.", "Checked in with the instructor, with permission."},
	ips.SupportTeamMeeting:          {"Discussed at weekly MH team meeting.", "Psychiatrist to review morning medication.", "Case manager will help with the housing paperwork."},
}

var specialistNames = []string{
	"Dana Whitfield", "Marcus Ortega", "Priya Raman", "Tom Kowalski", "Aisha Bello", "Jenny Nguyen",
	"Luis Herrera", "Beth Olsen", "Samuel Adeyemi", "Grace Lindqvist", "Omar Haddad", "Kate O'Brien",
}

var schedules = []string{"mornings", "weekdays only", "evenings and weekends", "flexible", "no early starts, medication makes mornings hard", "afternoons, after my group"}

var locations = []string{"on the number 5 bus line", "within walking distance of home", "downtown", "north side", "no more than 30 minutes by bus"}
