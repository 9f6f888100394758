package hooktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"unicode/utf8"
)

// maxTeamsMessage is the most a Teams message may hold (28 KB).
const maxTeamsMessage = 28 << 10

// CheckTeamsMessage checks a message posted to a Teams webhook: a
// "message" whose attachments are Adaptive Cards, each valid as
// CheckAdaptiveCard says.
func CheckTeamsMessage(body []byte) error {
	if len(body) > maxTeamsMessage {
		return fmt.Errorf("message is %d bytes, more than Teams' 28 KB", len(body))
	}
	var m struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string          `json:"contentType"`
			ContentURL  *string         `json:"contentUrl"`
			Content     json.RawMessage `json:"content"`
		} `json:"attachments"`
	}
	if err := strict(body, &m); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	if m.Type != "message" {
		return fmt.Errorf(`type %q, want "message"`, m.Type)
	}
	if len(m.Attachments) == 0 {
		return errors.New("no attachments")
	}
	for i, a := range m.Attachments {
		if a.ContentType != "application/vnd.microsoft.card.adaptive" {
			return fmt.Errorf("attachment %d: contentType %q", i, a.ContentType)
		}
		if err := CheckAdaptiveCard(a.Content); err != nil {
			return fmt.Errorf("attachment %d: %w", i, err)
		}
	}
	return nil
}

// card is the part of the Adaptive Card schema crier's cards may use;
// strict decoding refuses any other property.
type card struct {
	Schema  string            `json:"$schema"`
	Type    string            `json:"type"`
	Version string            `json:"version"`
	Body    []json.RawMessage `json:"body"`
	Actions []action          `json:"actions"`
	MSTeams *struct {
		Width string `json:"width"`
	} `json:"msteams"`
}

type element struct {
	Type string `json:"type"`
	// TextBlock
	Text     *string `json:"text"`
	Weight   string  `json:"weight"`
	Size     string  `json:"size"`
	Wrap     *bool   `json:"wrap"`
	Style    string  `json:"style"`
	IsSubtle *bool   `json:"isSubtle"`
	Color    string  `json:"color"`
	Spacing  string  `json:"spacing"`
	// FactSet
	Facts []struct {
		Title string `json:"title"`
		Value string `json:"value"`
	} `json:"facts"`
	// Container
	Items []json.RawMessage `json:"items"`
	ID    string            `json:"id"`
}

type action struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

var (
	cardVersions    = []string{"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"} // Teams renders up to 1.5
	sizes           = []string{"", "Default", "Small", "Medium", "Large", "ExtraLarge"}
	weights         = []string{"", "Default", "Lighter", "Bolder"}
	textStyles      = []string{"", "default", "heading"}
	containerStyles = []string{"", "default", "emphasis", "good", "attention", "warning", "accent"}
	colors          = []string{"", "Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}
	spacings        = []string{"", "None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"}
)

// CheckAdaptiveCard checks an Adaptive Card against the schema's rules
// for the elements it uses: TextBlock (text required), FactSet (facts of
// title and value), Container (items) and Action.OpenUrl (an absolute
// URL and a title). Enumerated values must be the schema's.
func CheckAdaptiveCard(raw []byte) error {
	var c card
	if err := strict(raw, &c); err != nil {
		return fmt.Errorf("card: %w", err)
	}
	if c.Type != "AdaptiveCard" {
		return fmt.Errorf(`card type %q, want "AdaptiveCard"`, c.Type)
	}
	if !slices.Contains(cardVersions, c.Version) {
		return fmt.Errorf("card version %q (Teams renders 1.0 to 1.5)", c.Version)
	}
	if err := checkElements(c.Body, "body"); err != nil {
		return err
	}
	for i, a := range c.Actions {
		if a.Type != "Action.OpenUrl" {
			return fmt.Errorf("action %d: type %q", i, a.Type)
		}
		u, err := url.Parse(a.URL)
		if err != nil || !u.IsAbs() || a.Title == "" {
			return fmt.Errorf("action %d: Action.OpenUrl needs an absolute url and a title (%q, %q)", i, a.URL, a.Title)
		}
	}
	return nil
}

func checkElements(items []json.RawMessage, where string) error {
	for i, raw := range items {
		var e element
		if err := strict(raw, &e); err != nil {
			return fmt.Errorf("%s[%d]: %w", where, i, err)
		}
		at := fmt.Sprintf("%s[%d] (%s)", where, i, e.Type)
		for _, v := range []struct {
			name, value string
			allowed     []string
		}{{"size", e.Size, sizes}, {"weight", e.Weight, weights}, {"color", e.Color, colors}, {"spacing", e.Spacing, spacings}} {
			if !slices.Contains(v.allowed, v.value) {
				return fmt.Errorf("%s: %s %q is not one of %q", at, v.name, v.value, v.allowed[1:])
			}
		}
		styles := textStyles
		if e.Type == "Container" {
			styles = containerStyles
		}
		if !slices.Contains(styles, e.Style) {
			return fmt.Errorf("%s: style %q is not one of %q", at, e.Style, styles[1:])
		}
		switch e.Type {
		case "TextBlock":
			if e.Text == nil || *e.Text == "" {
				return fmt.Errorf("%s: text is required", at)
			}
			if e.Facts != nil || e.Items != nil {
				return fmt.Errorf("%s: facts or items on a TextBlock", at)
			}
		case "FactSet":
			if len(e.Facts) == 0 {
				return fmt.Errorf("%s: facts is required", at)
			}
			for j, f := range e.Facts {
				if f.Title == "" || f.Value == "" {
					return fmt.Errorf("%s: fact %d needs a title and a value", at, j)
				}
			}
			if e.Text != nil || e.Style != "" {
				return fmt.Errorf("%s: text or style on a FactSet", at)
			}
		case "Container":
			if len(e.Items) == 0 {
				return fmt.Errorf("%s: items is required", at)
			}
			if e.Text != nil || e.Facts != nil {
				return fmt.Errorf("%s: text or facts on a Container", at)
			}
			if err := checkElements(e.Items, at+".items"); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected element type", at)
		}
	}
	return nil
}

// Slack's Block Kit limits.
const (
	maxBlocks        = 50
	maxHeaderText    = 150
	maxSectionText   = 3000
	maxSectionFields = 10
	maxFieldText     = 2000
	maxContextElems  = 10
)

type textObject struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Emoji    *bool  `json:"emoji"`
	Verbatim *bool  `json:"verbatim"`
}

type block struct {
	Type     string       `json:"type"`
	BlockID  string       `json:"block_id"`
	Text     *textObject  `json:"text"`
	Fields   []textObject `json:"fields"`
	Elements []textObject `json:"elements"`
}

// CheckSlackMessage checks a message posted to a Slack incoming webhook:
// text (the notification's fallback) and Block Kit blocks of the types
// crier uses (header, section, context, divider) within Slack's limits.
func CheckSlackMessage(body []byte) error {
	var m struct {
		Text   string  `json:"text"`
		Blocks []block `json:"blocks"`
	}
	if err := strict(body, &m); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	if m.Text == "" {
		return errors.New("no top-level text: it is the notification's and screen readers' fallback")
	}
	if len(m.Blocks) > maxBlocks {
		return fmt.Errorf("%d blocks, more than %d", len(m.Blocks), maxBlocks)
	}
	for i, b := range m.Blocks {
		at := fmt.Sprintf("blocks[%d] (%s)", i, b.Type)
		switch b.Type {
		case "header":
			if b.Text == nil || b.Text.Type != "plain_text" {
				return fmt.Errorf("%s: text must be a plain_text object", at)
			}
			if err := checkText(*b.Text, maxHeaderText, at+".text"); err != nil {
				return err
			}
			if b.Fields != nil || b.Elements != nil {
				return fmt.Errorf("%s: fields or elements on a header", at)
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				return fmt.Errorf("%s: text or fields is required", at)
			}
			if b.Text != nil {
				if err := checkText(*b.Text, maxSectionText, at+".text"); err != nil {
					return err
				}
			}
			if len(b.Fields) > maxSectionFields {
				return fmt.Errorf("%s: %d fields, more than %d", at, len(b.Fields), maxSectionFields)
			}
			for j, f := range b.Fields {
				if err := checkText(f, maxFieldText, fmt.Sprintf("%s.fields[%d]", at, j)); err != nil {
					return err
				}
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > maxContextElems {
				return fmt.Errorf("%s: 1 to %d elements, not %d", at, maxContextElems, len(b.Elements))
			}
			for j, e := range b.Elements {
				if err := checkText(e, maxSectionText, fmt.Sprintf("%s.elements[%d]", at, j)); err != nil {
					return err
				}
			}
		case "divider":
			if b.Text != nil || b.Fields != nil || b.Elements != nil {
				return fmt.Errorf("%s: a divider holds nothing", at)
			}
		default:
			return fmt.Errorf("%s: unexpected block type", at)
		}
	}
	return nil
}

func checkText(t textObject, max int, at string) error {
	switch {
	case t.Type != "plain_text" && t.Type != "mrkdwn":
		return fmt.Errorf("%s: type %q, want plain_text or mrkdwn", at, t.Type)
	case t.Text == "":
		return fmt.Errorf("%s: text must not be empty", at)
	case utf8.RuneCountInString(t.Text) > max:
		return fmt.Errorf("%s: %d characters, more than %d", at, utf8.RuneCountInString(t.Text), max)
	case t.Emoji != nil && t.Type != "plain_text":
		return fmt.Errorf("%s: emoji is only for plain_text", at)
	case t.Verbatim != nil && t.Type != "mrkdwn":
		return fmt.Errorf("%s: verbatim is only for mrkdwn", at)
	}
	return nil
}

// strict decodes raw into v, refusing unknown properties and trailing
// data.
func strict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}
