package outcomes

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

var update = flag.Bool("update", false, "rewrite testdata/outcomes/caseload-2026q3.json from the constructed caseload")

// The constructed caseload: 2026Q3 (1 July to 30 September 2026, 92 days)
// of a program with two specialists, Alex Rivera (32 active clients) and
// Sam Chen (8), plus clients who must not be counted. Every number the
// tests expect is worked out by hand in the comments below.
//
// Alex Rivera's 32 clients, a01–a32:
//
//	a01–a12 enrolled in the quarter (E=12); a01–a10 have a first employer
//	  contact (C=10) after 0, 3, 5, 10, 14, 20, 30, 31, 45 and 60 days, so
//	  a01–a07 within 30 days (W=7, a07 on day 30 exactly); a10's contact is
//	  after the quarter ends and still counts. a11 has only a planned and a
//	  cancelled contact and one dated before enrollment; a12 enrolled on the
//	  quarter's last day and has none.
//	a13–a26 held a competitive job in the quarter (N1=14); a13–a22 of 20+
//	  hours (N2=10); a23 has two concurrent jobs of 15 and 10 hours (not
//	  20+: hours of different jobs are not added); a24's job ended on
//	  1 July, a25's started on 30 September.
//	Jobs started in the quarter (J=7): a13 (a second job), a14, a15 (on
//	  1 July), a16 (two), a25, a29 (not competitive). First jobs since
//	  enrollment in the quarter (F=5): a14, a15, a16, a25, a29.
//	a27's competitive job ended on 30 June, a28's starts on 1 October: not
//	  held in the quarter. a30's first job began before enrollment; his
//	  second, competitive, ran from 15 April to 31 May. a31 was closed on
//	  1 July (still active in the quarter); a32 is on hold.
//	First competitive jobs since enrollment that started in the quarter
//	  (G=4): a14, a15, a16, a25, after 280, 240, 259 and 331 days (all
//	  four enrolled on 3 November 2025), median (259+280)/2 = 269.5.
//	  Benefits planning before the job started (B=2): a14 (completed
//	  20 July), a25 (in progress since 1 September); not a15 (on the day
//	  the job started) nor a16 (only planned).
//	First competitive jobs that reached 90 days in the quarter (R=2): a15
//	  (1 July + 90 = 29 September, still held: R90=1) and a30 (15 April +
//	  90 = 14 July, ended 31 May).
//	Weeks in the longest competitive job held, to its end or 30
//	  September, both days counted: a13 78/7, a14 52/7, a15 92/7, a16 43/7
//	  (the longer of two), a17–a22 269/7, a23 242/7, a24 151/7, a25 1/7,
//	  a26 214/7; median of the 14 (214/7+242/7)/2 = 32.57.
//	On the caseload on the quarter's first day: D−E = 20.
//
// Sam Chen's 8 clients, b1–b8: b1–b3 worked competitively (N1=3; b1, b2
// 20+ hours: N2=2); b4–b6 enrolled in the quarter (E=3), b4 contacted after
// 5 days, b5 after 40 (C=2, W=1); b7 started two non-competitive jobs, his
// first since enrollment (J=2, F=1); b8 has nothing.
//
// Sam Chen's jobs are no first competitive jobs of the quarter and none
// reached 90 days in it (G=B=R=R90=0); b1–b3's jobs ran 269 days (median
// 269/7 = 38.43 weeks); D−E = 5.
//
// Not counted: x1 closed on 30 June (with a current competitive job), x2
// enrolled on 1 October, x3 declined HIE sharing (with a job and a
// contact).
//
// Totals: D=40 N1=17 N2=12 E=15 C=12 W=8 F=6 J=9 G=4 B=2 R=2 R90=1;
// weeks in the longest job, median of 17: 269/7 = 38.43 (nine of them);
// on the caseload on the first day 25, 12.5 per specialist.
//
// Earnings = hours × wage × days in the quarter ÷ 7. A whole-quarter job of
// 20 h at $16 earns 20·16·92/7 = 29440/7. Alex Rivera's clients earn
// (35100 [a13: 25h·$18·78d] + 26520 [a14: 30h·$17·52d] + 29440 [a15] +
// 23360 [a16: 20h·$16·(43+30)d] + 6·29440 [a17–a22] + 40480 [a23:
// (15·16+10·20)·92] + 240 [a24: 15·16·1d] + 200 [a25: 10·20·1d] + 16560
// [a26: 12·15·92])/7 = 348540/7 = 49791.43; Sam Chen's (29440 + 46000 [b2:
// 25·20·92] + 13800 [b3: 10·15·92])/7 = 89240/7 = 12748.57; in all
// 437780/7 = 62540.00.
//
// Hourly wages (earnings ÷ hours in the quarter): Alex Rivera's 15, 16 ×9,
// 17, 17.6 (a23: 440/25), 18, 20, median 16; Sam Chen's 15, 16, 20, median
// 16; all 17: median 16.
//
// Days to first contact: Alex Rivera's 0 3 5 10 14 20 30 31 45 60, median
// (14+20)/2 = 17; Sam Chen's 5 40, median 22.5; all 12: 0 3 5 5 10 14 20
// 30 31 40 45 60, median 17.
const (
	alex = "Alex Rivera"
	sam  = "Sam Chen"
)

var q3 = Quarter{Year: 2026, Q: 3}

func d(s string) ips.Date { return ips.MustDate(s) }

func job(id, start, end string, hours, wage float64, competitive bool) *ips.Job {
	j := &ips.Job{ID: id, Employer: "Employer " + id, Title: "Worker", Start: d(start), HoursPerWeek: hours,
		HourlyWage: ips.Money{Value: wage, Currency: "USD"}, Competitive: competitive}
	if end != "" {
		j.End = d(end)
		j.EndReason = "other"
	}
	return j
}

func contact(id, date string, st ips.SupportStatus) *ips.Support {
	return &ips.Support{ID: id, Type: ips.SupportEmployerContact, Status: st, Date: d(date)}
}

func benefits(id, date string, st ips.SupportStatus) *ips.Support {
	return &ips.Support{ID: id, Type: ips.SupportBenefitsPlanning, Status: st, Date: d(date)}
}

func client(id, specialist, enrolled string) *ips.Client {
	return &ips.Client{ID: id, Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN-" + id},
		EnrolledOn: d(enrolled), Specialist: specialist}
}

// constructed builds the caseload described above.
func constructed() *ips.Caseload {
	var cs []*ips.Client
	add := func(c *ips.Client) *ips.Client { cs = append(cs, c); return c }

	// a01–a12: enrolled in the quarter.
	enrolled := []string{"2026-07-01", "2026-07-03", "2026-07-06", "2026-07-09", "2026-07-13", "2026-07-20",
		"2026-07-27", "2026-08-03", "2026-08-10", "2026-08-20", "2026-07-10", "2026-09-30"}
	days := []int{0, 3, 5, 10, 14, 20, 30, 31, 45, 60}
	for i, e := range enrolled {
		c := add(client(fmt.Sprintf("a%02d", i+1), alex, e))
		if i < len(days) {
			c.Supports = []*ips.Support{
				{ID: "s0", Type: ips.SupportCareerProfile, Status: ips.SupportCompleted, Date: d(e)},
				contact("s1", d(e).AddDays(days[i]).String(), ips.SupportCompleted),
				contact("s2", d(e).AddDays(days[i]+7).String(), ips.SupportCompleted),
			}
		}
		if i == 10 { // a11
			c.Supports = []*ips.Support{
				contact("s1", "2026-07-05", ips.SupportCompleted), // before enrollment
				contact("s2", "2026-07-15", ips.SupportPlanned),
				contact("s3", "2026-07-16", ips.SupportCancelled),
			}
		}
	}
	// a13–a26: held competitive jobs in the quarter.
	a := func(n int) *ips.Client { return add(client(fmt.Sprintf("a%02d", n), alex, "2025-11-03")) }
	a(13).Jobs = []*ips.Job{job("j1", "2025-12-01", "2026-03-01", 20, 15, true), job("j2", "2026-07-15", "", 25, 18, true)}
	a14 := a(14)
	a14.Jobs = []*ips.Job{job("j1", "2026-08-10", "", 30, 17, true)}
	a14.Supports = []*ips.Support{benefits("s1", "2026-07-20", ips.SupportCompleted)}
	a15 := a(15)
	a15.Jobs = []*ips.Job{job("j1", "2026-07-01", "", 20, 16, true)}
	a15.Supports = []*ips.Support{benefits("s1", "2026-07-01", ips.SupportCompleted)}
	a16 := a(16)
	a16.Jobs = []*ips.Job{job("j1", "2026-07-20", "2026-08-31", 20, 16, true), job("j2", "2026-09-01", "", 20, 16, true)}
	a16.Supports = []*ips.Support{benefits("s1", "2026-07-01", ips.SupportPlanned)}
	for n := 17; n <= 22; n++ {
		a(n).Jobs = []*ips.Job{job("j1", "2026-01-05", "", 20, 16, true)}
	}
	a(23).Jobs = []*ips.Job{job("j1", "2026-02-01", "", 15, 16, true), job("j2", "2026-02-01", "", 10, 20, true)}
	a(24).Jobs = []*ips.Job{job("j1", "2026-02-01", "2026-07-01", 15, 16, true)}
	a25 := a(25)
	a25.Jobs = []*ips.Job{job("j1", "2026-09-30", "", 10, 20, true)}
	a25.Supports = []*ips.Support{benefits("s1", "2026-09-01", ips.SupportInProgress)}
	a(26).Jobs = []*ips.Job{job("j1", "2026-03-01", "", 12, 15, true)}
	// a27–a32: active, not working competitively in the quarter.
	a(27).Jobs = []*ips.Job{job("j1", "2026-01-05", "2026-06-30", 25, 16, true)}
	a(28).Jobs = []*ips.Job{job("j1", "2026-10-01", "", 25, 16, true)}
	a(29).Jobs = []*ips.Job{job("j1", "2026-08-01", "", 20, 12, false)}
	a30 := add(client("a30", alex, "2025-02-01"))
	a30.Jobs = []*ips.Job{job("j1", "2025-01-01", "2025-06-01", 20, 15, true), job("j2", "2026-04-15", "2026-05-31", 20, 15, true)}
	a31 := add(client("a31", alex, "2025-03-01"))
	a31.ClosedOn, a31.Status = d("2026-07-01"), ips.ClientClosed
	a32 := add(client("a32", alex, "2025-04-01"))
	a32.Status = ips.ClientOnHold
	yes := true
	a32.Consent = &ips.Consent{HIE: &yes}

	// b1–b8: Sam Chen.
	b := func(n int, enrolled string) *ips.Client { return add(client(fmt.Sprintf("b%d", n), sam, enrolled)) }
	b(1, "2025-10-01").Jobs = []*ips.Job{job("j1", "2026-01-05", "", 20, 16, true)}
	b(2, "2025-10-01").Jobs = []*ips.Job{job("j1", "2026-01-05", "", 25, 20, true)}
	b(3, "2025-10-01").Jobs = []*ips.Job{job("j1", "2026-01-05", "", 10, 15, true)}
	b(4, "2026-07-07").Supports = []*ips.Support{contact("s1", "2026-07-12", ips.SupportInProgress)}
	b(5, "2026-08-04").Supports = []*ips.Support{contact("s1", "2026-09-13", ips.SupportCompleted)}
	b(6, "2026-09-01")
	b(7, "2025-12-01").Jobs = []*ips.Job{job("j1", "2026-08-15", "", 12, 13, false), job("j2", "2026-09-10", "", 8, 13, false)}
	b(8, "2025-12-01")

	// Not counted.
	x1 := add(client("x1", alex, "2025-05-01"))
	x1.ClosedOn, x1.Status = d("2026-06-30"), ips.ClientClosed
	x1.Jobs = []*ips.Job{job("j1", "2026-01-05", "", 20, 16, true)}
	add(client("x2", alex, "2026-10-01"))
	x3 := add(client("x3", sam, "2026-07-02"))
	no := false
	x3.Consent = &ips.Consent{HIE: &no}
	x3.Jobs = []*ips.Job{job("j1", "2026-07-05", "", 30, 20, true)}
	x3.Supports = []*ips.Support{contact("s1", "2026-07-03", ips.SupportCompleted)}

	return &ips.Caseload{Program: &ips.Program{ID: "riverside-ips", Name: "Riverside IPS"}, Clients: cs}
}

// hieDefaultYes is config.Consent{HIE: true}.AllowsHIE.
func hieDefaultYes(c *ips.Client) bool {
	if c.Consent != nil && c.Consent.HIE != nil {
		return *c.Consent.HIE
	}
	return true
}

const caseloadFile = "caseload-2026q3.json"

// The CLI tests import the constructed caseload from testdata/outcomes;
// this keeps the file equal to what constructed builds.
func TestConstructedCaseloadFile(t *testing.T) {
	cl := constructed()
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	// The caseload is valid by the format's own rules.
	if _, err := ips.Decode(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("the constructed caseload is invalid: %v", err)
	}
	path := filepath.Join("..", "testdata", "outcomes", caseloadFile)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buf.Bytes()) {
		t.Errorf("%s differs from the constructed caseload; run go test ./outcomes -run TestConstructedCaseloadFile -update", path)
	}
}
