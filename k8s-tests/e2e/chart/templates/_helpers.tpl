{{- define "e2e.labels" -}}
app.kubernetes.io/name: fraudpipe-e2e
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "e2e.target" -}}
{{- $target := index .Values.targets .Values.target -}}
{{- if not $target -}}{{- fail (printf "target %q: use kind or local-node" .Values.target) -}}{{- end -}}
{{- toJson $target -}}
{{- end -}}

{{/* The restricted Pod Security profile, as the pipeline's own pods run. */}}
{{- define "e2e.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "e2e.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
