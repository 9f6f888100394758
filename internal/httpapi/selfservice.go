package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/publicurl"
	"github.com/crier-dev/crier/internal/redact"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
	"github.com/crier-dev/crier/internal/token"
)

// subscribeView is the subscribe form.
type subscribeView struct {
	Email, Phone, Name, Organisation string
	EmailOn, SMSOn                   bool
	Tree                             []*node
	Errors                           formErrors
	ErrorList                        []fieldError
}

// sentView is the page after subscribing: where the messages went, and the
// form for the texted code.
type sentView struct {
	EmailTo, PhoneTo string // masked
	Phone            string // E.164, for the code form
	EmailError       string
	SMSError         string
	CodeError        string
	CodeMinutes      int
}

func (a *API) subscribeForm(w http.ResponseWriter, r *http.Request) {
	catalog, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, "subscribe", "Subscribe", subscribeView{
		EmailOn: a.subs.Offers(deliver.ChannelEmail), SMSOn: a.subs.Offers(deliver.ChannelSMS),
		Tree: componentTree(catalog, nil),
	})
}

// subscribe handles the subscribe form: subscriber.Service.CheckRequest
// checks it, Subscribe sends the confirmations. Whatever the addresses'
// history, a valid request gets the same page: addresses are never
// confirmed to exist.
func (a *API) subscribe(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		a.renderMessage(w, r, http.StatusBadRequest, message{Heading: "The form could not be read", Text: []string{"Please go back and try again."}, Link: "/subscribe", LinkText: "Back to the form"})
		return
	}
	now := a.cfg.Now()
	if ok, err := a.subscribeClient.allow(r.Context(), a.client(r), now); err != nil || !ok {
		if err == nil {
			a.d.Log.WarnContext(r.Context(), "subscribe rate-limited", "limit", "client")
		}
		a.limited(w, r, err)
		return
	}
	catalog, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	v := subscribeView{
		Email: strings.TrimSpace(r.PostFormValue("email")), Phone: strings.TrimSpace(r.PostFormValue("phone")),
		Name: strings.TrimSpace(r.PostFormValue("name")), Organisation: strings.TrimSpace(r.PostFormValue("organisation")),
		EmailOn: a.subs.Offers(deliver.ChannelEmail), SMSOn: a.subs.Offers(deliver.ChannelSMS),
	}
	picked := r.PostForm["components"]
	req, err := a.subs.CheckRequest(r.Context(), subscriber.NewSnapshot(catalog), subscriber.Input{
		Email: &v.Email, Phone: &v.Phone, Name: &v.Name, Organisation: &v.Organisation, Components: &picked,
	})
	var invalid *subscriber.InvalidError
	if errors.As(err, &invalid) {
		v.Errors = subscribeErrors(invalid)
		v.ErrorList = v.Errors.list()
		v.Tree = componentTree(catalog, picked)
		a.render(w, r, http.StatusUnprocessableEntity, "subscribe", "Subscribe: there is a problem", v)
		return
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	if ok, err := a.addressAllowed(r, req, now); err != nil || !ok {
		a.limited(w, r, err)
		return
	}
	res, err := a.subs.Subscribe(r.Context(), req)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.renderSent(w, r, req, res)
}

// subscribeErrors words the problems of a subscribe form, one per field.
func subscribeErrors(invalid *subscriber.InvalidError) formErrors {
	e := formErrors{}
	for _, fe := range invalid.Fields {
		switch fe.Field {
		case "email":
			switch {
			case errors.Is(fe, subscriber.ErrChannelOff):
				e["email"] = "Email notifications are not available here"
			case errors.Is(fe, subscriber.ErrNoAddress):
				e["email"] = "Enter an email address, a mobile number or both"
			default:
				e["email"] = "Enter an email address like name@example.org"
			}
		case "phone":
			if errors.Is(fe, subscriber.ErrChannelOff) {
				e["phone"] = "Text messages are not available here"
			} else {
				e["phone"] = phoneProblem(fe.Err)
			}
		case "components":
			e["components"] = componentsProblem(fe, "Choose at least one service")
		case "name":
			e["name"] = "Enter a name of at most 200 characters on one line"
		case "organisation":
			e["organisation"] = "Enter an organisation of at most 200 characters on one line"
		}
	}
	return e
}

// componentsProblem words a refusal of the services ticked in a form;
// none is the text for no service at all.
func componentsProblem(fe *subscriber.FieldError, none string) string {
	switch {
	case errors.Is(fe, subscriber.ErrNoComponents):
		return none
	case errors.Is(fe, subscriber.ErrTooManyComponents):
		return fmt.Sprintf("Choose at most %d services", event.MaxComponents)
	}
	return "A service you chose no longer exists: choose again"
}

// addressAllowed applies the per-address rate limits, after validation and
// whether or not the address is known: a number (a premium one, say)
// cannot be texted more than a few times, and one client cannot have many
// numbers texted.
func (a *API) addressAllowed(r *http.Request, req subscriber.Details, now time.Time) (bool, error) {
	ctx := r.Context()
	if req.Phone != "" {
		ok, err := a.smsClient.allow(ctx, a.client(r), now)
		if err != nil || !ok {
			if err == nil {
				a.d.Log.WarnContext(ctx, "subscribe rate-limited", "limit", "sms-client")
			}
			return false, err
		}
		if ok, err = a.subscribeAddress.allow(ctx, "sms:"+req.Phone, now); err != nil || !ok {
			if err == nil {
				a.d.Log.WarnContext(ctx, "subscribe rate-limited", "limit", "phone", "phone", phone.Mask(req.Phone))
			}
			return false, err
		}
	}
	if req.Email != "" {
		ok, err := a.subscribeAddress.allow(ctx, "email:"+strings.ToLower(req.Email), now)
		if err != nil || !ok {
			if err == nil {
				a.d.Log.WarnContext(ctx, "subscribe rate-limited", "limit", "email", "email", redact.Email(req.Email))
			}
			return false, err
		}
	}
	return true, nil
}

// renderSent shows where the confirmations went: 200 when at least one
// was sent, 503 when none could be.
func (a *API) renderSent(w http.ResponseWriter, r *http.Request, req subscriber.Details, res subscriber.Sent) {
	sent := sentView{Phone: req.Phone, CodeMinutes: int(a.cfg.CodeTTL.Minutes())}
	if req.Email != "" {
		sent.EmailTo = redact.Email(req.Email)
		if res.Email != nil {
			a.d.Log.WarnContext(r.Context(), "confirmation email not sent", "email", sent.EmailTo, "error", redact.String(res.Email.Error()))
			sent.EmailError = sendProblem("an email to "+sent.EmailTo, res.Email)
		}
	}
	if req.Phone != "" {
		sent.PhoneTo = phone.Mask(req.Phone)
		if res.SMS != nil {
			a.d.Log.WarnContext(r.Context(), "confirmation code not sent", "phone", sent.PhoneTo, "error", redact.String(res.SMS.Error()))
			sent.SMSError = sendProblem("a text message to "+sent.PhoneTo, res.SMS)
		}
	}
	a.d.Log.InfoContext(r.Context(), "subscribe requested", "email", sent.EmailTo, "phone", sent.PhoneTo, "components", strings.Join(req.Components, ","))
	status := http.StatusOK
	if (req.Email == "" || res.Email != nil) && (req.Phone == "" || res.SMS != nil) {
		status = http.StatusServiceUnavailable // nothing could be sent
	}
	a.render(w, r, status, "sent", "Check your messages", sent)
}

// phoneProblem words a phone.Normalize error for the form.
func phoneProblem(err error) string {
	if errors.Is(err, phone.ErrNotMobile) {
		return "Enter a mobile number: this number cannot receive text messages"
	}
	reason := err.Error()
	if i := strings.LastIndex(reason, ": "); i >= 0 {
		reason = reason[i+2:]
	}
	return "Enter a mobile number like 07400 123456 or +44 7400 123456 (" + reason + ")"
}

// sendProblem words a failure to send a confirmation message.
func sendProblem(what string, err error) string {
	if deliver.IsPermanent(err) {
		return "We could not send " + what + ": the address was refused. Check it and subscribe again."
	}
	return "We could not send " + what + " just now. Please try again in a few minutes."
}

// verifyCode checks the code typed on the page after subscribing. Every
// refusal (no code pending, wrong, expired, too many tries) gets the same
// answer.
func (a *API) verifyCode(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		a.renderMessage(w, r, http.StatusBadRequest, message{Heading: "The form could not be read", Text: []string{"Please go back and try again."}})
		return
	}
	if ok, err := a.verifyClient.allow(r.Context(), a.client(r), a.cfg.Now()); err != nil || !ok {
		a.limited(w, r, err)
		return
	}
	num := r.PostFormValue("phone")
	if !phone.IsE164(num) {
		a.renderMessage(w, r, http.StatusBadRequest, message{Heading: "The form could not be read", Text: []string{"Please subscribe again."}, Link: "/subscribe", LinkText: "Back to the form"})
		return
	}
	code := strings.Join(strings.Fields(r.PostFormValue("code")), "")
	id, err := a.subs.VerifyCode(r.Context(), num, code)
	if errors.Is(err, subscriber.ErrCodeRefused) {
		a.d.Log.InfoContext(r.Context(), "confirmation code refused", "phone", phone.Mask(num), "reason", err.Error())
		a.render(w, r, http.StatusUnprocessableEntity, "sent", "Check the code", sentView{
			PhoneTo: phone.Mask(num), Phone: num, CodeMinutes: int(a.cfg.CodeTTL.Minutes()),
			CodeError: "That code is not right, or it has expired. Check the text message and try again, or subscribe again for a new code.",
		})
		return
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.d.Log.InfoContext(r.Context(), "phone number confirmed", "subscriber_id", id, "phone", phone.Mask(num))
	a.renderMessage(w, r, http.StatusOK, message{
		Heading: "Your mobile number is confirmed",
		Text:    []string{"You will get a text message when one of the services you chose has a problem. Each message tells you how to stop them."},
		Link:    a.d.Links.ManageURL(id), LinkText: "Manage your notifications",
	})
}

// confirmView is the page behind an email confirmation link.
type confirmView struct {
	Address string
	Action  string
}

// confirmEmail shows a button for a valid email confirmation link (GET) and
// confirms the address (POST). Confirming takes a POST so that a mail
// scanner following links cannot subscribe someone.
func (a *API) confirmEmail(w http.ResponseWriter, r *http.Request) {
	confirm := a.subs.CheckConfirm
	if r.Method == http.MethodPost {
		confirm = a.subs.Confirm
	}
	sub, err := confirm(r.Context(), r.PathValue("id"), r.PathValue("token"))
	if errors.Is(err, subscriber.ErrLinkInvalid) {
		a.invalidLink(w, r)
		return
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	if r.Method != http.MethodPost {
		a.render(w, r, http.StatusOK, "confirm", "Confirm your email address", confirmView{
			Address: redact.Email(sub.Email),
			Action:  publicurl.ConfirmPath(r.PathValue("id"), r.PathValue("token")),
		})
		return
	}
	a.d.Log.InfoContext(r.Context(), "email address confirmed", "subscriber_id", sub.ID, "email", redact.Email(sub.Email))
	a.renderMessage(w, r, http.StatusOK, message{
		Heading: "Your email address is confirmed",
		Text:    []string{"You will get an email when one of the services you chose has a problem. Each email has a link to change your choices or unsubscribe."},
		Link:    a.d.Links.ManageURL(sub.ID), LinkText: "Manage your notifications",
	})
}

// subscriberFor returns the subscriber a manage or unsubscribe token was
// made for. An invalid token is looked up as id 0, which never exists, so
// every refusal costs about the same. found is false for any refusal.
func (a *API) subscriberFor(r *http.Request, tok string, purposes ...string) (sub store.Subscriber, purpose string, found bool, err error) {
	var id int64
	for _, p := range purposes { // every purpose is tried, whatever matches
		if got, _, err := a.d.Signer.Verify(p, tok); err == nil && purpose == "" {
			id, purpose = got, p
		}
	}
	sub, err = a.d.Store.GetSubscriber(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && purpose == "") {
		return store.Subscriber{}, "", false, nil
	}
	if err != nil {
		return store.Subscriber{}, "", false, err
	}
	return sub, purpose, true, nil
}

// channelView is one channel on the manage page.
type channelView struct {
	Key, Label, Address string
	Checked, Available  bool
	Note                string
}

// manageView is the manage page.
type manageView struct {
	Action    string
	Saved     bool
	Channels  []channelView
	Tree      []*node
	Errors    formErrors
	ErrorList []fieldError
}

func channelViews(sub store.Subscriber) []channelView {
	views := []channelView{
		channelViewOf(deliver.ChannelEmail, "Email", sub.Email, redact.Email(sub.Email), sub.EmailConfirmedAt, sub.EmailOptedOutAt,
			"No email address is on file. To get emails as well, subscribe with your email address on the subscribe page.",
			"Not confirmed yet: follow the link we emailed you, or subscribe again for a new one."),
		channelViewOf(deliver.ChannelSMS, "Text message", sub.Phone, phone.Mask(sub.Phone), sub.SMSConfirmedAt, sub.SMSOptedOutAt,
			"No mobile number is on file. To get text messages as well, subscribe with your mobile number on the subscribe page.",
			"Not confirmed yet: subscribe again with this number to get a new code."),
	}
	// Destinations, set by an administrator, are shown when there is one:
	// the subscriber can switch them off and on, not change them.
	for _, d := range []struct {
		key, label, url string
		optedOut        *time.Time
	}{
		{deliver.ChannelTeams, "Microsoft Teams", sub.TeamsURL, sub.TeamsOptedOutAt},
		{deliver.ChannelSlack, "Slack", sub.SlackURL, sub.SlackOptedOutAt},
		{deliver.ChannelWebhook, "Webhook", sub.WebhookURL, sub.WebhookOptedOutAt},
	} {
		if d.url != "" {
			views = append(views, channelViewOf(d.key, d.label, d.url, redact.Destination(d.url), &sub.CreatedAt, d.optedOut, "", ""))
		}
	}
	return views
}

// channelViewOf describes one channel of a subscriber: missing, waiting for
// confirmation, or available (checked unless opted out).
func channelViewOf(key, label, addr, masked string, confirmed, optedOut *time.Time, noAddress, unconfirmed string) channelView {
	v := channelView{Key: key, Label: label}
	switch {
	case addr == "":
		v.Note = noAddress
	case confirmed == nil:
		v.Address, v.Note = masked, unconfirmed
	default:
		v.Address = masked
		v.Available, v.Checked = true, optedOut == nil
	}
	return v
}

// manage shows (GET) and changes (POST) a subscriber's components and
// channels, from the link in every message.
func (a *API) manage(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	sub, _, found, err := a.subscriberFor(r, tok, token.PurposeManage)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	if !found {
		a.invalidLink(w, r)
		return
	}
	catalog, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	action := publicurl.ManagePath(tok)
	v := manageView{Action: action, Channels: channelViews(sub), Tree: componentTree(catalog, sub.Components), Errors: formErrors{}}
	if r.Method != http.MethodPost {
		v.Saved = r.URL.Query().Get("saved") == "1"
		a.render(w, r, http.StatusOK, "manage", "Your notifications", v)
		return
	}
	if err := parseForm(w, r); err != nil {
		a.renderMessage(w, r, http.StatusBadRequest, message{Heading: "The form could not be read", Text: []string{"Please go back and try again."}})
		return
	}
	if r.PostFormValue("action") == "unsubscribe" {
		a.unsubscribeAll(w, r, sub, v)
		return
	}
	a.saveChoices(w, r, sub, catalog, v)
}

// unsubscribeAll opts sub out of every channel with an address.
func (a *API) unsubscribeAll(w http.ResponseWriter, r *http.Request, sub store.Subscriber, v manageView) {
	for _, ch := range v.Channels {
		if ch.Address == "" {
			continue
		}
		if err := a.d.Store.OptOut(r.Context(), sub.ID, ch.Key); err != nil {
			a.unavailable(w, r, err)
			return
		}
	}
	a.d.Log.InfoContext(r.Context(), "unsubscribed from everything", "subscriber_id", sub.ID)
	a.renderMessage(w, r, http.StatusOK, message{
		Heading: "You are unsubscribed",
		Text:    []string{"You will get no more incident notifications from us, by email or by text message.", "Changed your mind? Switch them on again on your notifications page."},
		Link:    v.Action, LinkText: "Back to your notifications",
	})
}

// saveChoices stores the components (checked by subscriber.CheckComponents)
// and channels ticked on the manage page.
func (a *API) saveChoices(w http.ResponseWriter, r *http.Request, sub store.Subscriber, catalog []store.Component, v manageView) {
	picked := r.PostForm["components"]
	components, err := subscriber.CheckComponents(r.Context(), subscriber.NewSnapshot(catalog), picked)
	var fe *subscriber.FieldError
	if errors.As(err, &fe) {
		v.Errors["components"] = componentsProblem(fe, "Choose at least one service, or unsubscribe from everything below")
		v.Tree = componentTree(catalog, picked)
		v.ErrorList = v.Errors.list()
		a.render(w, r, http.StatusUnprocessableEntity, "manage", "Your notifications: there is a problem", v)
		return
	}
	if err == nil {
		err = a.d.Store.SetSubscriptions(r.Context(), sub.ID, components)
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	wanted := r.PostForm["channels"]
	for _, ch := range v.Channels {
		if !ch.Available {
			continue
		}
		switch want := slices.Contains(wanted, ch.Key); {
		case want && !ch.Checked:
			err = a.d.Store.OptIn(r.Context(), sub.ID, ch.Key)
		case !want && ch.Checked:
			err = a.d.Store.OptOut(r.Context(), sub.ID, ch.Key)
		}
		if err != nil {
			a.unavailable(w, r, err)
			return
		}
	}
	a.d.Log.InfoContext(r.Context(), "subscription changed", "subscriber_id", sub.ID, "components", strings.Join(components, ","), "channels", strings.Join(wanted, ","))
	http.Redirect(w, r, v.Action+"?saved=1", http.StatusSeeOther)
}

// unsubscribeView is the confirm page of an unsubscribe link.
type unsubscribeView struct {
	Channel, Address, Action string
}

// unsubscribe shows a button (GET) and unsubscribes the token's channel at
// once (POST), which is also what a mail client's RFC 8058 one-click POST
// ("List-Unsubscribe=One-Click", no cookies) does.
func (a *API) unsubscribe(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	sub, purpose, found, err := a.subscriberFor(r, tok, token.PurposeUnsubscribeEmail, token.PurposeUnsubscribeSMS)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	if !found {
		a.invalidLink(w, r)
		return
	}
	channel, label, addr := deliver.ChannelEmail, "email", redact.Email(sub.Email)
	if purpose == token.PurposeUnsubscribeSMS {
		channel, label, addr = deliver.ChannelSMS, "text message", phone.Mask(sub.Phone)
	}
	if r.Method != http.MethodPost {
		a.render(w, r, http.StatusOK, "unsubscribe", "Unsubscribe", unsubscribeView{
			Channel: label, Address: addr, Action: publicurl.UnsubscribePath(tok),
		})
		return
	}
	if err := a.d.Store.OptOut(r.Context(), sub.ID, channel); err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.d.Log.InfoContext(r.Context(), "unsubscribed", "subscriber_id", sub.ID, "channel", channel)
	a.renderMessage(w, r, http.StatusOK, message{
		Heading: "You are unsubscribed",
		Text:    []string{addr + " will get no more incident notifications by " + label + "."},
	})
}
