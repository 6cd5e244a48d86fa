{{/*
Names and labels. Kubernetes names and label values are at most 63 characters: every name is
truncated there, and the trailing "-" a cut may leave is dropped.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "mtls-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name, followed by the chart
name unless the release name already contains it ("mtls-operator" installs as "mtls-operator").
*/}}
{{- define "mtls-operator.fullname" -}}
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

{{/* "<fullname>-<suffix>", the suffix kept whole: the prefix is cut so that the result fits. */}}
{{- define "mtls-operator.suffixed" -}}
{{- $suffix := index . 1 }}
{{- $prefix := include "mtls-operator.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix $suffix }}
{{- end }}

{{- define "mtls-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; fixed for the release's lifetime (a selector is immutable). */}}
{{- define "mtls-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mtls-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "mtls-operator.labels" -}}
helm.sh/chart: {{ include "mtls-operator.chart" . }}
{{ include "mtls-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mtls-operator
{{- end }}

{{- define "mtls-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mtls-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The webhook Service: the operator puts "<name>.<namespace>.svc" in its serving certificate. */}}
{{- define "mtls-operator.webhookServiceName" -}}
{{- include "mtls-operator.suffixed" (list . "webhook") }}
{{- end }}

{{/* Both webhook configurations (mutating and validating) share this name; the operator patches their caBundle. */}}
{{- define "mtls-operator.webhookConfigurationName" -}}
{{- include "mtls-operator.fullname" . }}
{{- end }}

{{- define "mtls-operator.metricsServiceName" -}}
{{- include "mtls-operator.suffixed" (list . "metrics") }}
{{- end }}

{{- define "mtls-operator.leaseName" -}}
{{- default (include "mtls-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* A shard's own Lease, "<leaseName>-<shard>" (list . shardName); the Lease of all when not sharded (""). */}}
{{- define "mtls-operator.shardLeaseName" -}}
{{- $name := index . 1 }}
{{- if $name }}
{{- printf "%s-%s" (include "mtls-operator.leaseName" (index . 0) | trunc (int (sub 252 (len $name)))) $name }}
{{- else }}
{{- include "mtls-operator.leaseName" (index . 0) }}
{{- end }}
{{- end }}

{{/* The operator's default CA Secret name (constants.DEFAULT_CA_SECRET) unless the user brings one. */}}
{{- define "mtls-operator.caSecretName" -}}
{{- default "mtls-operator-ca" .Values.ca.existingSecret }}
{{- end }}

{{/* The webhooks' own CA (constants.DEFAULT_WEBHOOK_CA_SECRET unless renamed). */}}
{{- define "mtls-operator.webhookCASecretName" -}}
{{- default "mtls-operator-webhook-ca" .Values.webhook.caSecret }}
{{- end }}

{{/* The ValidatingAdmissionPolicy on the operator's Secret writes, and its binding (cluster-scoped). */}}
{{- define "mtls-operator.secretPolicyName" -}}
{{- include "mtls-operator.suffixed" (list . "secret-writes") }}
{{- end }}

{{- define "mtls-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Rules across values, which the JSON schema cannot say readably. Included by the Deployment, so a
bad combination fails `helm install` before anything is created.
*/}}
{{- define "mtls-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without the Lease every replica would issue" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled=true: the ServiceMonitor selects that Service" }}
{{- end }}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.prometheusRule.enabled needs metrics.enabled=true: its alerts read the operator's metrics" }}
{{- end }}
{{- if eq (include "mtls-operator.webhookCASecretName" .) (include "mtls-operator.caSecretName" .) }}
{{- fail "webhook.caSecret must differ from the CA Secret's name: the webhooks' CA is kept apart from the pods' CA" }}
{{- end }}
{{- $shardNames := list }}
{{- range .Values.shards }}{{ $shardNames = append $shardNames .name }}{{ end }}
{{- if ne (len $shardNames) (len (uniq $shardNames)) }}
{{- fail (printf "shards: every shard needs its own name (got %s)" (join ", " $shardNames)) }}
{{- end }}
{{- $ports := list (int .Values.health.port) }}
{{- if .Values.metrics.enabled }}{{ $ports = append $ports (int .Values.metrics.port) }}{{ end }}
{{- if .Values.webhook.enabled }}{{ $ports = append $ports (int .Values.webhook.port) }}{{ end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail (printf "health.port, metrics.port and webhook.port must differ (got %s)" (join ", " $ports)) }}
{{- end }}
{{- end }}

{{/* MTLS_ALLOWED_DNS_PATTERNS from allowedDNSPatterns: "ns,ns:pattern,pattern" per scoped item, a bare
pattern for a string item, entries joined by ";". */}}
{{- define "mtls-operator.allowedDNSPatterns" -}}
{{- $entries := list }}
{{- range .Values.allowedDNSPatterns }}
{{- if kindIs "string" . }}
{{- $entries = append $entries . }}
{{- else }}
{{- $entries = append $entries (printf "%s:%s" (join "," .namespaces) (join "," .patterns)) }}
{{- end }}
{{- end }}
{{- join ";" $entries }}
{{- end }}

{{/*
The signer's ClusterTrustBundle: the API requires the signer name, with ":" for "/", and ":" as prefix.
*/}}
{{- define "mtls-operator.clusterTrustBundleName" -}}
{{- printf "%s:bundle" (.Values.podCertificates.signerName | replace "/" ":") -}}
{{- end }}
