package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/store"
)

const (
	maxNameLen        = 200
	maxDescriptionLen = 2000
)

func (a *API) listComponents(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []store.Component{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"components": cs})
	return nil
}

// componentInput is the body of PUT /v1/components/{key...}.
// Fields absent are empty: PUT replaces the whole component.
type componentInput struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Guidance    *string   `json:"guidance"`
	Recovery    *string   `json:"recovery"`
	Actions     *[]string `json:"actions"`
}

// Limits of a runbook.
const (
	maxRunbookLen = 2000
	maxActions    = 10
	maxActionLen  = 100
)

// checkText validates a single-line (or, when multiline, free) text field.
func checkText(field, v string, maxLen int, multiline bool) error {
	if n := utf8.RuneCountInString(v); n > maxLen {
		return fail(http.StatusUnprocessableEntity, field, "%s is %d characters, more than the limit of %d", field, n, maxLen)
	}
	for _, r := range v {
		if r == 0 || (!multiline && event.UnsafeInLine(r)) || (multiline && unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t') {
			return fail(http.StatusUnprocessableEntity, field, "%s must not contain control or formatting characters", field)
		}
	}
	return nil
}

func (a *API) putComponent(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if !event.ValidKey(key) {
		return fail(http.StatusUnprocessableEntity, "key", "%q is not a component key: lower-case letters, digits and dashes, groups separated by /", key)
	}
	var in componentInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil || strings.TrimSpace(*in.Name) == "" {
		return fail(http.StatusUnprocessableEntity, "name", "name is required")
	}
	c := store.Component{Key: key, Name: strings.TrimSpace(*in.Name)}
	if in.Description != nil {
		c.Description = strings.TrimSpace(*in.Description)
	}
	if err := checkText("name", c.Name, maxNameLen, false); err != nil {
		return err
	}
	if err := checkText("description", c.Description, maxDescriptionLen, true); err != nil {
		return err
	}
	c.Guidance, c.Recovery = strings.TrimSpace(deref(in.Guidance)), strings.TrimSpace(deref(in.Recovery))
	if err := checkText("guidance", c.Guidance, maxRunbookLen, true); err != nil {
		return err
	}
	if err := checkText("recovery", c.Recovery, maxRunbookLen, true); err != nil {
		return err
	}
	c.Actions = []string{}
	for _, act := range deref(in.Actions) {
		act = strings.TrimSpace(act)
		if act == "" || slices.Contains(c.Actions, act) {
			continue
		}
		if err := checkText("actions", act, maxActionLen, false); err != nil {
			return err
		}
		c.Actions = append(c.Actions, act)
	}
	if len(c.Actions) > maxActions {
		return fail(http.StatusUnprocessableEntity, "actions", "actions has %d choices, more than %d", len(c.Actions), maxActions)
	}
	created, err := a.d.Store.PutComponent(r.Context(), c)
	if errors.Is(err, store.ErrNotFound) {
		return fail(http.StatusUnprocessableEntity, "key", "the parent component %q does not exist: create it first", store.ParentKey(key))
	}
	if err != nil {
		return err
	}
	got, err := a.d.Store.GetComponent(r.Context(), key)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/components/"+(&url.URL{Path: key}).EscapedPath())
	}
	writeJSON(w, status, got)
	return nil
}

func (a *API) deleteComponent(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	force := false
	switch v := r.URL.Query().Get("force"); v {
	case "", "false", "0":
	case "true", "1":
		force = true
	default:
		return fail(http.StatusBadRequest, "force", "force must be true or false")
	}
	err := a.d.Store.DeleteComponent(r.Context(), key, force)
	if errors.Is(err, store.ErrInUse) {
		return fail(http.StatusConflict, "key", "%v: remove the child components and subscriptions first, or delete with ?force=true to remove the whole subtree and its subscriptions", err)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
