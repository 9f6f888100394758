package httpapi

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/store"
)

// organisationInput is the body of POST and PATCH /v1/organisations. In a
// PATCH, absent fields stay as they are and key cannot change.
type organisationInput struct {
	Key   *string `json:"key"`
	Name  *string `json:"name"`
	Phone *string `json:"phone"`
}

var organisationKeyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// organisationView is an organisation with its contacts.
type organisationView struct {
	store.Organisation
	ContactList []store.Contact `json:"contact_list"`
}

// checkOrganisation validates the name and phone given (nil: absent) and
// returns them normalised; the phone is the home's landline, so any
// number in E.164 form is taken, not only mobiles.
func (a *API) checkOrganisation(in organisationInput) (name, tel *string, err error) {
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		if n == "" {
			return nil, nil, fail(http.StatusUnprocessableEntity, "name", "name is required")
		}
		if err := checkText("name", n, maxNameLen, false); err != nil {
			return nil, nil, err
		}
		name = &n
	}
	if in.Phone != nil {
		p := strings.TrimSpace(*in.Phone)
		if p != "" {
			if p, err = phone.NormalizeAny(p, a.cfg.PhoneRegion); err != nil {
				return nil, nil, fail(http.StatusUnprocessableEntity, "phone", "phone: %v", err)
			}
		}
		tel = &p
	}
	return name, tel, nil
}

func (a *API) createOrganisation(w http.ResponseWriter, r *http.Request) error {
	var in organisationInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Key == nil || !organisationKeyRE.MatchString(*in.Key) {
		return fail(http.StatusUnprocessableEntity, "key", "key is required: lower-case letters, digits and dashes (oakview-care-home)")
	}
	if in.Name == nil {
		return fail(http.StatusUnprocessableEntity, "name", "name is required")
	}
	name, tel, err := a.checkOrganisation(in)
	if err != nil {
		return err
	}
	o := store.Organisation{Key: *in.Key, Name: *name}
	if tel != nil {
		o.Phone = *tel
	}
	if err := a.d.Store.CreateOrganisation(r.Context(), o); errors.Is(err, store.ErrConflict) {
		return fail(http.StatusConflict, "key", "an organisation with key %q exists", o.Key)
	} else if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/organisations/"+o.Key)
	return a.writeOrganisation(w, r, o.Key, http.StatusCreated)
}

func (a *API) listOrganisations(w http.ResponseWriter, r *http.Request) error {
	orgs, err := a.d.Store.ListOrganisations(r.Context())
	if err != nil {
		return err
	}
	if orgs == nil {
		orgs = []store.Organisation{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"organisations": orgs})
	return nil
}

func (a *API) getOrganisation(w http.ResponseWriter, r *http.Request) error {
	return a.writeOrganisation(w, r, r.PathValue("key"), http.StatusOK)
}

func (a *API) writeOrganisation(w http.ResponseWriter, r *http.Request, key string, status int) error {
	o, err := a.d.Store.GetOrganisation(r.Context(), key)
	if err != nil {
		return err
	}
	contacts, err := a.d.Store.OrganisationContacts(r.Context(), key)
	if err != nil {
		return err
	}
	if contacts == nil {
		contacts = []store.Contact{}
	}
	writeJSON(w, status, organisationView{Organisation: o, ContactList: contacts})
	return nil
}

func (a *API) patchOrganisation(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	var in organisationInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Key != nil && *in.Key != key {
		return fail(http.StatusUnprocessableEntity, "key", "key cannot change")
	}
	name, tel, err := a.checkOrganisation(in)
	if err != nil {
		return err
	}
	if err := a.d.Store.UpdateOrganisation(r.Context(), key, name, tel); err != nil {
		return err
	}
	return a.writeOrganisation(w, r, key, http.StatusOK)
}

// deleteOrganisation deletes an organisation; its contacts stay, each a
// home of one.
func (a *API) deleteOrganisation(w http.ResponseWriter, r *http.Request) error {
	if err := a.d.Store.DeleteOrganisation(r.Context(), r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
