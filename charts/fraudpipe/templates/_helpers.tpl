{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "fraudpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "fraudpipe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fraudpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fraudpipe.labels" -}}
helm.sh/chart: {{ include "fraudpipe.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fraudpipe
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The operator's pod labels. The operator's NetworkPolicies admit pods with
app.kubernetes.io/name=fraudpipe, app.kubernetes.io/component=operator to managed brokers. */}}
{{- define "fraudpipe.selectorLabels" -}}
app.kubernetes.io/name: fraudpipe
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fraudpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fraudpipe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The rules the operator needs: its own resource, and create/read/apply of the children it
manages. No delete (owner references and the garbage collector do that) except of the
optional children a spec turns off (archiver, scheduled jobs, KEDA objects), no list/watch of
children (drift is checked by reading them by name), Secrets only read and created. */}}
{{- define "fraudpipe.rules" -}}
- apiGroups: [fraudpipe.io]
  resources: [fraudpipelines]
  verbs: [get, list, watch, patch, update]
- apiGroups: [fraudpipe.io]
  resources: [fraudpipelines/status]
  verbs: [get, patch, update]
- apiGroups: [fraudpipe.io]
  resources: [fraudpipelines/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [services, serviceaccounts]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
# The canary driver finds the scorer pods to read their statistics and set their routing.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, patch]
# delete: the archiver's Deployment, when spec.archive is turned off, must stop consuming.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, patch]
# delete: a CronJob turned off in the spec (report, retention, backup) must stop running.
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, patch]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, prometheusrules]
  verbs: [get, create, patch]
# The keda engine of spec.scorer.autoscaling; delete, because a ScaledObject left behind
# when the engine changes would keep scaling the scorer.
- apiGroups: [keda.sh]
  resources: [scaledobjects, triggerauthentications]
  verbs: [get, create, patch, delete]
{{- end }}
