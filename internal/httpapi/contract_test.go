package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/crier-dev/crier/internal/httpapi"
)

// contract is the validator of the OpenAPI document, built once.
var contract = sync.OnceValues(func() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(httpapi.OpenAPI)
	if err != nil {
		return nil, err
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, verrs[0]
	}
	return v, nil
})

// componentPath matches the component routes, whose key may hold "/".
var componentPath = regexp.MustCompile(`^/v1/components/(.+)$`)

// checkContract validates one exchange with the API against the OpenAPI
// document: every answer, and every request that was accepted (2xx). A
// request the server accepts but the document refuses, or an answer it
// does not describe, means the two have drifted, and fails the test.
func checkContract(t *testing.T, method, rawURL string, reqHeader http.Header, reqBody []byte, status int, respHeader http.Header, respBody []byte) {
	t.Helper()
	for _, p := range contractProblems(t, method, rawURL, reqHeader, reqBody, status, respHeader, respBody) {
		t.Error(p)
	}
}

func contractProblems(t *testing.T, method, rawURL string, reqHeader http.Header, reqBody []byte, status int, respHeader http.Header, respBody []byte) []string {
	t.Helper()
	v, err := contract()
	if err != nil {
		t.Fatalf("the OpenAPI document: %v", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil || !strings.HasPrefix(u.Path, "/v1/") {
		return nil
	}
	if status == http.StatusNotFound && !bytes.HasPrefix(bytes.TrimSpace(respBody), []byte("{")) ||
		status == http.StatusMethodNotAllowed {
		return nil // no route: the mux answered, not the API
	}
	// OpenAPI path parameters hold no "/": a component key is sent with
	// its slashes escaped, which the router takes as well.
	if m := componentPath.FindStringSubmatch(u.Path); m != nil {
		u.RawPath = "/v1/components/" + strings.ReplaceAll(url.PathEscape(m[1]), "/", "%2F")
	}
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(reqBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = reqHeader.Clone()
	var problems []string
	if status/100 == 2 {
		if ok, errs := v.ValidateHttpRequest(req); !ok {
			for _, e := range errs {
				problems = append(problems, fmt.Sprintf("%s %s was accepted (%d) but the OpenAPI document refuses the request: %s: %s", method, u.Path, status, e.Message, e.Reason))
			}
		}
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp := &http.Response{StatusCode: status, Header: respHeader, Body: io.NopCloser(bytes.NewReader(respBody)), Request: req}
	if ok, errs := v.ValidateHttpResponse(req, resp); !ok {
		for _, e := range errs {
			problems = append(problems, fmt.Sprintf("%s %s answered %d, which the OpenAPI document does not describe: %s: %s\n%.400s", method, u.Path, status, e.Message, e.Reason, respBody))
		}
	}
	return problems
}

// TestContractCheckCanFail: the check refuses answers and accepted
// requests that the document does not describe.
func TestContractCheckCanFail(t *testing.T) {
	t.Parallel()
	js := http.Header{"Content-Type": {"application/json"}}
	auth := http.Header{"Authorization": {"Bearer x"}, "Content-Type": {"application/json"}}
	for name, c := range map[string]struct {
		method, url string
		req         string
		status      int
		resp        string
	}{
		"a missing required field":   {"GET", "/v1/components", "", 200, `{"components": [{"key": "emar"}]}`},
		"a wrong type":               {"GET", "/v1/subscribers/1", "", 200, `{"id": "one", "name": "", "organisation": "", "components": [], "created_at": "2025-11-10T13:35:00Z"}`},
		"an undocumented status":     {"DELETE", "/v1/subscribers/1", "", 418, `{"error": "teapot"}`},
		"an unknown channel":         {"GET", "/v1/events/x/deliveries?channel=fax", "", 200, `{"deliveries": [], "next": null}`},
		"a request the doc refuses":  {"POST", "/v1/subscribers", `{"channels": ["fax"]}`, 201, `{"id": 1, "name": "", "organisation": "", "components": [], "created_at": "2025-11-10T13:35:00Z"}`},
		"an event without its kind":  {"POST", "/v1/events", `{"id": "a", "incident_id": "b"}`, 202, `{"id": "a", "duplicate": false}`},
		"an error without its error": {"GET", "/v1/events/x", "", 404, `{"message": "no"}`},
	} {
		if p := contractProblems(t, c.method, "http://crier.test"+c.url, auth, []byte(c.req), c.status, js, []byte(c.resp)); len(p) == 0 {
			t.Errorf("%s: the contract check found nothing wrong", name)
		}
	}
	// Positive control.
	if p := contractProblems(t, "GET", "http://crier.test/v1/components", auth, nil, 200, js,
		[]byte(`{"components": [{"key": "emar", "name": "eMar", "description": "", "guidance": "", "recovery": "", "actions": [], "created_at": "2025-11-10T13:35:00Z"}]}`)); len(p) != 0 {
		t.Errorf("a right answer: %v", p)
	}
}

// TestOpenAPIDocumentsEveryRoute walks the router's /v1 routes and fails
// for any the document does not have, and for any documented operation no
// route serves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	doc, err := libopenapi.NewDocument(httpapi.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	if v := model.Model.Version; v != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", v)
	}
	documented := map[string]bool{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	routed := map[string]bool{}
	for _, p := range b.api.APIPatterns() {
		p = strings.ReplaceAll(p, "...}", "}") // {key...}: the rest of the path
		routed[p] = true
		if !documented[p] {
			t.Errorf("route %s is not in the OpenAPI document", p)
		}
	}
	for op := range documented {
		if !routed[op] {
			t.Errorf("the OpenAPI document has %s, which no route serves", op)
		}
	}
	if len(routed) < 17 {
		t.Errorf("only %d routes walked: %v", len(routed), routed)
	}
	// Served without a token, and it is the embedded document.
	a := b.get(t, "/v1/openapi.json")
	expectStatus(t, a, http.StatusOK)
	if !bytes.Equal(a.body, httpapi.OpenAPI) || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		t.Errorf("GET /v1/openapi.json: %s %.100s", a.header.Get("Content-Type"), a.body)
	}
}
