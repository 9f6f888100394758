package templates

import "embed"

// Pages holds the HTML templates (html/template) of the self-service pages
// and the admin dashboard that internal/httpapi serves, pages/*.html.tmpl.
// layout.html.tmpl defines the frame shared by every page ("layout") and
// the component tree ("tree"); each other file defines the "content" of one
// page. They are always the embedded ones: CRIER_TEMPLATES_DIR replaces
// notification templates only.
//
//go:embed pages/*.html.tmpl
var Pages embed.FS
