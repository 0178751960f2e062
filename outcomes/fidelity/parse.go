package fidelity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The linkIds of the Questionnaire's items that are not rated.
const (
	linkProgram    = "program"
	linkReviewDate = "review-date"
	linkReviewer   = "reviewer"
)

// maxProgramID is the Questionnaire's maxLength for the program item.
const maxProgramID = 64

// Review is a valid fidelity review, as Parse reads it.
type Review struct {
	ProgramID  string         // the program item, trimmed
	ReviewDate string         // the review-date item, YYYY-MM-DD
	Ratings    map[string]int // rating 1–5 of each of the 25 items, by linkId
}

// Problem is one thing wrong with a response. LinkID names the item it is
// about, when there is one and it is safe to repeat; Path says where in the
// response it is ("QuestionnaireResponse.item[4].item[0]"), empty for an
// item that is missing. Message never quotes what was entered.
type Problem struct {
	LinkID  string `json:"linkId,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	switch {
	case p.LinkID != "" && p.Path != "":
		return p.LinkID + " (" + p.Path + "): " + p.Message
	case p.LinkID != "":
		return p.LinkID + ": " + p.Message
	case p.Path != "":
		return p.Path + ": " + p.Message
	}
	return p.Message
}

// InvalidError is what Parse returns for a response it cannot score: every
// problem it found, in document order, then the items that are missing in
// the scale's order. Its message names linkIds and paths only.
type InvalidError struct {
	Problems []Problem
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fidelity: invalid review: %d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Score parses a response and scores it: Parse, then Review.Summary.
func Score(data []byte) (Summary, error) {
	r, err := Parse(data)
	if err != nil {
		return Summary{}, err
	}
	return r.Summary(), nil
}

// Parse reads a FHIR R4 QuestionnaireResponse (JSON) to the IPS-25 fidelity
// Questionnaire and checks it strictly: questionnaire is QuestionnaireURL,
// status is completed, program, review-date and at least one reviewer are
// given, and each of the 25 items is answered exactly once, in its section's
// group, with one valueInteger from 1 to 5; no item the Questionnaire does
// not have may appear. It reports every problem at once in an *InvalidError.
// Base R4 conformance is the validator's job (ipsfhir validate), not Parse's.
func Parse(data []byte) (Review, error) {
	p := &parser{seen: map[string]int{}, rev: Review{Ratings: map[string]int{}}}
	if p.document(data) {
		for _, l := range []string{linkProgram, linkReviewDate, linkReviewer} {
			if p.seen[l] == 0 {
				p.add(l, "", "missing")
			}
		}
		for _, it := range scale {
			if p.seen[it.LinkID] == 0 {
				p.add(it.LinkID, "", fmt.Sprintf("not answered (a rating 1-5 belongs in group %s)", it.Section))
			}
		}
	}
	if len(p.problems) > 0 {
		return Review{}, &InvalidError{Problems: p.problems}
	}
	return p.rev, nil
}

type parser struct {
	problems []Problem
	seen     map[string]int // occurrences of each known linkId
	rev      Review
}

func (p *parser) add(linkID, path, msg string) {
	p.problems = append(p.problems, Problem{LinkID: linkID, Path: path, Message: msg})
}

const rootPath = "QuestionnaireResponse"

// document checks the response; it reports false when data is not a
// QuestionnaireResponse at all, so that listing what is missing makes no sense.
func (p *parser) document(data []byte) bool {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		p.add("", "", "not a JSON document")
		return false
	}
	if _, err := d.Token(); err != io.EOF {
		p.add("", "", "not a single JSON document: something follows it")
		return false
	}
	obj, ok := doc.(map[string]any)
	if !ok || obj["resourceType"] != "QuestionnaireResponse" {
		p.add("", "", "not a FHIR QuestionnaireResponse")
		return false
	}

	switch q, ok := obj["questionnaire"].(string); {
	case !ok:
		p.add("", rootPath+".questionnaire", "missing; it must be "+QuestionnaireURL)
	default:
		url, version, hasVersion := strings.Cut(q, "|")
		if url != QuestionnaireURL {
			p.add("", rootPath+".questionnaire", "not the IPS-25 fidelity Questionnaire "+QuestionnaireURL)
		} else if hasVersion && version != QuestionnaireVersion {
			p.add("", rootPath+".questionnaire", "version is not "+QuestionnaireVersion)
		}
	}
	if obj["status"] != "completed" {
		p.add("", rootPath+".status", "must be completed")
	}

	items, ok := obj["item"].([]any)
	if !ok {
		if _, present := obj["item"]; present {
			p.add("", rootPath+".item", "not a list of items")
		}
		return true
	}
	groups := map[Section]bool{}
	for i, raw := range items {
		path := fmt.Sprintf("%s.item[%d]", rootPath, i)
		item, linkID, ok := p.item(raw, path)
		if !ok {
			continue
		}
		if sec := Section(linkID); sec.Title() != "" {
			if groups[sec] {
				p.add(linkID, path, "group appears more than once")
			}
			groups[sec] = true
			p.group(item, sec, path)
			continue
		}
		switch linkID {
		case linkProgram:
			if !p.once(linkID, path) {
				continue
			}
			if s, ok := p.oneString(item, linkID, path); ok {
				p.program(s, path)
			}
		case linkReviewDate:
			if p.once(linkID, path) {
				p.reviewDate(item, path)
			}
		case linkReviewer:
			if p.once(linkID, path) {
				p.reviewers(item, path)
			}
		default:
			if it, ok := itemByLinkID(linkID); ok {
				p.add(linkID, path, "belongs in group "+string(it.Section))
				p.rated(item, it, path)
				continue
			}
			p.unknown(linkID, path)
		}
	}
	return true
}

// item reads the object and linkId of an item; it reports items that are
// neither.
func (p *parser) item(raw any, path string) (map[string]any, string, bool) {
	item, ok := raw.(map[string]any)
	if !ok {
		p.add("", path, "not an item object")
		return nil, "", false
	}
	linkID, ok := item["linkId"].(string)
	if !ok || linkID == "" {
		p.add("", path, "item has no linkId")
		return nil, "", false
	}
	return item, linkID, true
}

// safeLinkID admits unknown linkIds that look like identifiers, so they can
// be named; anything else might be data typed in the wrong place.
var safeLinkID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,31}$`)

func (p *parser) unknown(linkID, path string) {
	if !safeLinkID.MatchString(linkID) {
		linkID = ""
	}
	p.add(linkID, path, "not an item of the IPS-25 fidelity Questionnaire")
}

// once counts an occurrence of a known linkId and reports every one after
// the first.
func (p *parser) once(linkID, path string) bool {
	p.seen[linkID]++
	if p.seen[linkID] > 1 {
		p.add(linkID, path, "appears more than once; answer each item once")
		return false
	}
	return true
}

func (p *parser) group(item map[string]any, sec Section, path string) {
	if _, ok := item["answer"]; ok {
		p.add(string(sec), path+".answer", "a group has no answer; its items do")
	}
	children, ok := item["item"].([]any)
	if !ok {
		if _, present := item["item"]; present {
			p.add(string(sec), path+".item", "not a list of items")
		}
		return // its items are reported as not answered
	}
	for i, raw := range children {
		cpath := fmt.Sprintf("%s.item[%d]", path, i)
		child, linkID, ok := p.item(raw, cpath)
		if !ok {
			continue
		}
		it, ok := itemByLinkID(linkID)
		if !ok {
			p.unknown(linkID, cpath)
			continue
		}
		if it.Section != sec {
			p.add(linkID, cpath, "belongs in group "+string(it.Section)+", not "+string(sec))
		}
		p.rated(child, it, cpath)
	}
}

// rated checks one of the 25 rated items and records its rating.
func (p *parser) rated(item map[string]any, it Item, path string) {
	if !p.once(it.LinkID, path) {
		return
	}
	if _, ok := item["item"]; ok {
		p.add(it.LinkID, path+".item", "a rated item has no nested items")
	}
	a, apath, ok := p.oneAnswer(item, it.LinkID, path)
	if !ok {
		return
	}
	v, ok := value(a, "valueInteger")
	if !ok {
		p.add(it.LinkID, apath, "the rating must be a valueInteger from 1 to 5")
		return
	}
	n, ok := v.(json.Number)
	r, err := strconv.Atoi(string(n))
	if !ok || err != nil || r < MinRating || r > MaxRating {
		p.add(it.LinkID, apath+".valueInteger", "the rating must be a whole number from 1 to 5")
		return
	}
	p.rev.Ratings[it.LinkID] = r
}

// oneAnswer returns the single answer of an item, reporting none or several.
func (p *parser) oneAnswer(item map[string]any, linkID, path string) (map[string]any, string, bool) {
	answers, ok := answerList(item)
	switch {
	case !ok:
		p.add(linkID, path+".answer", "not a list of answers")
		return nil, "", false
	case len(answers) == 0:
		p.add(linkID, path, "not answered")
		return nil, "", false
	case len(answers) > 1:
		p.add(linkID, path+".answer", fmt.Sprintf("has %d answers; give exactly one", len(answers)))
		return nil, "", false
	}
	return p.answer(answers[0], linkID, path+".answer[0]")
}

func answerList(item map[string]any) ([]any, bool) {
	raw, present := item["answer"]
	if !present {
		return nil, true
	}
	list, ok := raw.([]any)
	return list, ok
}

func (p *parser) answer(raw any, linkID, path string) (map[string]any, string, bool) {
	a, ok := raw.(map[string]any)
	if !ok {
		p.add(linkID, path, "not an answer object")
		return nil, "", false
	}
	if _, ok := a["item"]; ok {
		p.add(linkID, path+".item", "answers here have no nested items")
	}
	return a, path, true
}

// value returns an answer's value if it has exactly one value[x] and that
// is of the wanted type.
func value(a map[string]any, want string) (any, bool) {
	var found []string
	for k := range a {
		if strings.HasPrefix(k, "value") {
			found = append(found, k)
		}
	}
	if len(found) != 1 || found[0] != want {
		return nil, false
	}
	return a[want], true
}

// oneString returns the trimmed valueString of an item with exactly one
// answer.
func (p *parser) oneString(item map[string]any, linkID, path string) (string, bool) {
	a, apath, ok := p.oneAnswer(item, linkID, path)
	if !ok {
		return "", false
	}
	return p.stringValue(a, linkID, apath)
}

func (p *parser) stringValue(a map[string]any, linkID, path string) (string, bool) {
	v, _ := value(a, "valueString")
	s, ok := v.(string)
	if !ok {
		p.add(linkID, path, "the answer must be a valueString")
		return "", false
	}
	s = strings.TrimSpace(s)
	if s == "" {
		p.add(linkID, path+".valueString", "blank")
		return "", false
	}
	return s, true
}

func (p *parser) program(s, path string) {
	bad := !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl)
	switch {
	case bad:
		p.add(linkProgram, path+".answer[0].valueString", "contains control characters")
	case utf8.RuneCountInString(s) > maxProgramID:
		p.add(linkProgram, path+".answer[0].valueString", fmt.Sprintf("longer than %d characters", maxProgramID))
	default:
		p.rev.ProgramID = s
	}
}

var fullDate = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

func (p *parser) reviewDate(item map[string]any, path string) {
	a, apath, ok := p.oneAnswer(item, linkReviewDate, path)
	if !ok {
		return
	}
	v, _ := value(a, "valueDate")
	s, ok := v.(string)
	if !ok {
		p.add(linkReviewDate, apath, "the answer must be a valueDate")
		return
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil || !fullDate.MatchString(s) {
		p.add(linkReviewDate, apath+".valueDate", "must be a full date, YYYY-MM-DD")
		return
	}
	p.rev.ReviewDate = s
}

func (p *parser) reviewers(item map[string]any, path string) {
	answers, ok := answerList(item)
	switch {
	case !ok:
		p.add(linkReviewer, path+".answer", "not a list of answers")
		return
	case len(answers) == 0:
		p.add(linkReviewer, path, "name at least one reviewer")
		return
	}
	for i, raw := range answers {
		if a, apath, ok := p.answer(raw, linkReviewer, fmt.Sprintf("%s.answer[%d]", path, i)); ok {
			p.stringValue(a, linkReviewer, apath)
		}
	}
}
