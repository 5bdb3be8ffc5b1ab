{{- define "hubguard.name" -}}hubguard{{- end -}}

{{- define "hubguard.fullname" -}}
{{- if contains "hubguard" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-hubguard" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "hubguard.labels" -}}
app.kubernetes.io/name: hubguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hubguard.selector" -}}
app.kubernetes.io/name: hubguard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hubguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
Where hubguard's own components run. With scope cluster: the release namespace, which the
webhook never judges. With scope releaseNamespace the release namespace is the tenants' (the
hub's), so the components go to a namespace of their own: a namespace where tenants can create
pods must never hold pods that hubguard leaves unjudged, nor its service accounts.
*/}}
{{- define "hubguard.namespace" -}}
{{- $ns := .Values.componentsNamespace -}}
{{- if not $ns -}}
{{- $ns = ternary (printf "%s-hubguard" .Release.Namespace) .Release.Namespace (eq .Values.scope "releaseNamespace") -}}
{{- end -}}
{{- if and (eq .Values.scope "releaseNamespace") (eq $ns .Release.Namespace) -}}
{{- fail (printf "componentsNamespace %q is the namespace hubguard guards (scope releaseNamespace): hubguard's components must live where tenants cannot create pods; leave componentsNamespace empty (%s-hubguard) or name another namespace" $ns .Release.Namespace) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{- define "hubguard.tlsSecret" -}}
{{ .Values.tls.secretName | default (printf "%s-webhook-tls" (include "hubguard.fullname" .)) }}
{{- end -}}

{{- define "hubguard.webhookService" -}}
{{ include "hubguard.fullname" . }}-webhook
{{- end -}}

{{/* The policy document: inline values, or the preset shipped in files/policies. */}}
{{- define "hubguard.policy" -}}
{{- $text := "" -}}
{{- if .Values.policy.inline -}}
{{- $text = toYaml .Values.policy.inline -}}
{{- else -}}
{{- $file := printf "files/policies/%s.yaml" .Values.policy.preset -}}
{{- $text = .Files.Get $file -}}
{{- if not $text -}}{{- fail (printf "policy.preset %q: no such preset (baseline, restricted, tess-public, tess-private)" .Values.policy.preset) -}}{{- end -}}
{{- end -}}
{{- $namespaces := .Values.policy.namespaces -}}
{{- if and (not $namespaces) (eq .Values.scope "releaseNamespace") -}}
{{- $namespaces = dict "include" (list .Release.Namespace) -}}
{{- end -}}
{{- if or $namespaces .Values.policy.adminGroups -}}
{{- $doc := fromYaml $text -}}
{{- if $namespaces -}}
{{- $_ := set $doc.spec "namespaces" $namespaces -}}
{{- end -}}
{{- if .Values.policy.adminGroups -}}
{{- $trust := $doc.spec.trust | default dict -}}
{{- $groups := concat ($trust.groups | default list) .Values.policy.adminGroups | uniq -}}
{{- $_ := set $trust "groups" $groups -}}
{{- $_ := set $doc.spec "trust" $trust -}}
{{- end -}}
{{ toYaml $doc }}
{{- else -}}
{{ $text }}
{{- end -}}
{{- end -}}

{{/* Namespaces the API server never sends to the webhook. */}}
{{- define "hubguard.excludedNamespaces" -}}
{{- $list := list "kube-system" (include "hubguard.namespace" .) -}}
{{- range .Values.webhook.excludeNamespaces }}{{ $list = append $list . }}{{ end -}}
{{ toJson ($list | uniq) }}
{{- end -}}

{{- define "hubguard.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* "policy" or "webhook": who mutates on create (values.yaml webhook.mutation). */}}
{{- define "hubguard.mutation" -}}
{{- if eq .Values.webhook.mutation "auto" -}}
{{- if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy" -}}policy{{- else -}}webhook{{- end -}}
{{- else -}}
{{- .Values.webhook.mutation -}}
{{- end -}}
{{- end -}}
