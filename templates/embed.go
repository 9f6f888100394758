// Package templates holds crier's default notification templates, embedded
// in the binary. internal/render parses them at start-up; a directory named
// in the configuration can replace any of them file by file.
//
// The files are:
//
//   - email.subject.tmpl: the subject line (text/template)
//   - email.txt.tmpl: the plain-text part of an email (text/template)
//   - email.html.tmpl: the HTML part of an email (html/template)
//   - sms.txt.tmpl: the text message (text/template)
//   - webhook.json.tmpl: the JSON body of a signed webhook (text/template)
//   - teams.json.tmpl: the Adaptive Card posted to Microsoft Teams
//   - slack.json.tmpl: the Block Kit message posted to Slack
//
// The data each template receives is documented in internal/render
// (EmailData, SMSData and HookData).
package templates

import "embed"

// FS holds the default templates, *.tmpl at the root.
//
//go:embed *.tmpl
var FS embed.FS
