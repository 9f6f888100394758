package httpapi

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/templates"
)

// pageNames are the page templates in templates/pages, each parsed with
// the layout.
var pageNames = []string{"subscribe", "sent", "message", "confirm", "unsubscribe", "manage", "login", "dashboard", "ack", "incident"}

func parsePages() (map[string]*template.Template, error) {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Option("missingkey=zero").ParseFS(templates.Pages, "pages/layout.html.tmpl", "pages/"+name+".html.tmpl")
		if err != nil {
			return nil, fmt.Errorf("httpapi: page template %s: %w", name, err)
		}
		if t.Lookup("content") == nil {
			return nil, fmt.Errorf("httpapi: page template %s defines no content", name)
		}
		out[name] = t
	}
	return out, nil
}

// frame is what the layout needs around a page.
type frame struct {
	Site  string
	Title string
	Wide  bool
	P     any
}

// render executes a page into a buffer first, so that a template error
// becomes a clean 500 rather than half a page.
func (a *API) render(w http.ResponseWriter, r *http.Request, status int, name, title string, p any) {
	var buf bytes.Buffer
	err := a.pages[name].ExecuteTemplate(&buf, "layout", frame{Site: a.cfg.SiteName, Title: title, Wide: name == "dashboard" || name == "incident", P: p})
	if err != nil {
		a.d.Log.ErrorContext(r.Context(), "render page", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message is a page with a heading, some paragraphs and maybe one link.
type message struct {
	Heading  string
	Text     []string
	Link     string
	LinkText string
}

func (a *API) renderMessage(w http.ResponseWriter, r *http.Request, status int, m message) {
	a.render(w, r, status, "message", m.Heading, m)
}

// invalidLink is the one answer to every manage, unsubscribe or confirm
// link that does not verify, whatever the reason.
func (a *API) invalidLink(w http.ResponseWriter, r *http.Request) {
	a.renderMessage(w, r, http.StatusNotFound, message{
		Heading: "This link does not work",
		Text: []string{
			"The link may be incomplete (check that you copied all of it), or it may have expired.",
			"To start again, subscribe once more: if you are already subscribed, we will email you a fresh link.",
		},
		Link: "/subscribe", LinkText: "Go to the subscribe page",
	})
}

func (a *API) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	a.d.Log.ErrorContext(r.Context(), "page failed", "path", r.Pattern, "error", err)
	w.Header().Set("Retry-After", "30")
	a.renderMessage(w, r, http.StatusServiceUnavailable, message{
		Heading: "Sorry, something went wrong",
		Text:    []string{"We could not complete this just now. Please try again in a few minutes."},
	})
}

// limited answers a request refused by a rate limit, or whose limit could
// not be checked (err): 503, as for any failure of the database.
func (a *API) limited(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.tooMany(w, r)
}

func (a *API) tooMany(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "600")
	a.renderMessage(w, r, http.StatusTooManyRequests, message{
		Heading: "Too many attempts",
		Text:    []string{"There have been too many requests from here or for this address. Please wait a few minutes and try again."},
	})
}

// fieldError is one entry of a form's error summary, linking to its field.
type fieldError struct {
	ID   string
	Text string
}

// formErrors are a form's errors by field name, shown next to each field
// and summarised at the top in the order of fieldOrder.
type formErrors map[string]string

var fieldOrder = []string{"email", "phone", "components", "name", "organisation", "form"}

func (e formErrors) list() []fieldError {
	var out []fieldError
	for _, f := range fieldOrder {
		if msg, ok := e[f]; ok {
			out = append(out, fieldError{ID: f, Text: msg})
		}
	}
	return out
}

// node is one component in the checkbox tree of the forms.
type node struct {
	Key      string
	Name     string
	Hint     string
	Checked  bool
	Children []*node
}

// componentTree arranges the catalog (ordered parents first) as a tree,
// with the keys in checked ticked.
func componentTree(catalog []store.Component, checked []string) []*node {
	byKey := map[string]*node{}
	var roots []*node
	for _, c := range catalog {
		n := &node{Key: c.Key, Name: c.Name, Hint: c.Description, Checked: slices.Contains(checked, c.Key)}
		byKey[c.Key] = n
		if p, ok := byKey[c.Parent]; ok && c.Parent != "" {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	var describe func(ns []*node)
	describe = func(ns []*node) {
		for _, n := range ns {
			if len(n.Children) > 0 {
				names := make([]string, len(n.Children))
				for i, c := range n.Children {
					names[i] = c.Name
				}
				covers := "Covers " + joinNames(names) + "."
				if n.Hint != "" {
					n.Hint = strings.TrimRight(n.Hint, ".") + ". " + covers
				} else {
					n.Hint = covers
				}
				describe(n.Children)
			}
		}
	}
	describe(roots)
	return roots
}

// joinNames lists names as English prose: "A", "A and B", "A, B and C".
func joinNames(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// maxFormBody bounds the body of page forms.
const maxFormBody = 64 << 10

// parseForm reads a page form's body, at most maxFormBody bytes.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	return r.ParseForm()
}
