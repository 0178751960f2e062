package fidelity

import (
	"encoding/json"
	"fmt"
)

// Summary is a scored review, shaped for JSON: what a report shows next to a
// program's outcomes.
type Summary struct {
	Questionnaire string         `json:"questionnaire"` // canonical|version answered
	ProgramID     string         `json:"programId"`
	ReviewDate    string         `json:"reviewDate"` // YYYY-MM-DD
	Total         int            `json:"total"`      // 25–125
	MaxTotal      int            `json:"maxTotal"`   // 125
	Band          Band           `json:"band"`       // stable code, e.g. "good"
	BandLabel     string         `json:"bandLabel"`  // e.g. "Good fidelity"
	Sections      []SectionScore `json:"sections"`   // in the scale's order
	Items         []ItemScore    `json:"items"`      // the 25 items, in the scale's order
	Caveat        string         `json:"caveat"`
}

// SectionScore is the subtotal of one section.
type SectionScore struct {
	Section Section `json:"section"`
	Title   string  `json:"title"`
	Score   int     `json:"score"`
	Max     int     `json:"max"`
	Items   int     `json:"items"`
}

// ItemScore is the rating of one item.
type ItemScore struct {
	LinkID  string  `json:"linkId"`
	Section Section `json:"section"`
	Text    string  `json:"text"`
	Rating  int     `json:"rating"`
}

// Summary scores a review from Parse: the total, the subtotal of each
// section and the band.
func (r Review) Summary() Summary {
	s := Summary{
		Questionnaire: QuestionnaireURL + "|" + QuestionnaireVersion,
		ProgramID:     r.ProgramID,
		ReviewDate:    r.ReviewDate,
		MaxTotal:      MaxTotal,
		Caveat:        Caveat,
		Items:         make([]ItemScore, 0, len(scale)),
	}
	for _, sec := range Sections() {
		ss := SectionScore{Section: sec, Title: sec.Title()}
		for _, it := range scale {
			if it.Section != sec {
				continue
			}
			v := r.Ratings[it.LinkID]
			ss.Score += v
			ss.Max += MaxRating
			ss.Items++
			s.Items = append(s.Items, ItemScore{LinkID: it.LinkID, Section: sec, Text: it.Text, Rating: v})
		}
		s.Total += ss.Score
		s.Sections = append(s.Sections, ss)
	}
	s.Band = BandFor(s.Total)
	s.BandLabel = s.Band.String()
	return s
}

// String is a one-line summary for text reports, e.g. "IPS-25 fidelity
// 104/125, Good fidelity (staffing 14/15, organization 33/40, services
// 57/70), program ips-east, reviewed 2024-03-15".
func (s Summary) String() string {
	secs := ""
	for i, ss := range s.Sections {
		if i > 0 {
			secs += ", "
		}
		secs += fmt.Sprintf("%s %d/%d", ss.Section, ss.Score, ss.Max)
	}
	return fmt.Sprintf("IPS-25 fidelity %d/%d, %s (%s), program %s, reviewed %s",
		s.Total, s.MaxTotal, s.BandLabel, secs, s.ProgramID, s.ReviewDate)
}

// ReportJSON renders s as the block a JSON report puts next to its outcomes:
// {"fidelity": Summary}, pretty-printed with two spaces and ending in a
// newline.
func ReportJSON(s Summary) []byte {
	out, err := json.MarshalIndent(struct {
		Fidelity Summary `json:"fidelity"`
	}{s}, "", "  ")
	if err != nil {
		panic("fidelity: marshal summary: " + err.Error()) // plain strings and ints cannot fail
	}
	return append(out, '\n')
}
