{{- define "jobpool.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobpool.serviceAccountName" -}}
{{- default (include "jobpool.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "jobpool.labels" -}}
app.kubernetes.io/name: jobpool-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "jobpool.selectorLabels" -}}
app.kubernetes.io/name: jobpool-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jobpool.redisName" -}}
{{- printf "%s-redis" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobpool.defaultQueueUrl" -}}
{{- if .Values.defaultQueueUrl -}}
{{- .Values.defaultQueueUrl -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s.%s.svc:%d/0" (include "jobpool.redisName" .) .Release.Namespace (int .Values.redis.port) -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every container of the chart. */}}
{{- define "jobpool.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
