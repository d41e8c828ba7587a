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

{{- define "jobpool.redisSelectorLabels" -}}
app.kubernetes.io/name: jobpool-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jobpool.redisAddress" -}}
{{- printf "%s.%s.svc:%d/0" (include "jobpool.redisName" .) .Release.Namespace (int .Values.redis.port) -}}
{{- end -}}

{{/* The default queue: JOBPOOL_ADMIN_QUEUE_URL when the operator administers it (per-pool ACL
users), from a Secret, never inline; else JOBPOOL_DEFAULT_QUEUE_URL. */}}
{{- define "jobpool.defaultQueueEnv" -}}
{{- if .Values.defaultQueueUrl }}
- name: JOBPOOL_DEFAULT_QUEUE_URL
  value: {{ .Values.defaultQueueUrl | quote }}
{{- else if .Values.adminQueue.secretName }}
- name: JOBPOOL_ADMIN_QUEUE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.adminQueue.secretName }}
      key: {{ .Values.adminQueue.key }}
{{- else if and .Values.redis.enabled .Values.redis.auth.enabled }}
- name: JOBPOOL_ADMIN_QUEUE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "jobpool.redisName" . }}
      key: url
{{- else if .Values.redis.enabled }}
- name: JOBPOOL_DEFAULT_QUEUE_URL
  value: {{ printf "redis://%s" (include "jobpool.redisAddress" .) | quote }}
{{- end }}
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

{{- /* Redis maxmemory in bytes: redis.maxmemory, else redis.maxmemoryPercent of the container's
memory limit (the rest is for the AOF rewrite, client buffers and fragmentation). */}}
{{- define "jobpool.redisMaxmemory" -}}
{{- if .Values.redis.maxmemory -}}
{{- .Values.redis.maxmemory -}}
{{- else -}}
{{- $limit := dig "limits" "memory" "" .Values.redis.resources | toString -}}
{{- if not $limit -}}
{{- fail "redis.resources.limits.memory is required (maxmemory is derived from it), or set redis.maxmemory" -}}
{{- end -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $limit -}}
{{- $unit := trimPrefix $number $limit -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "redis.resources.limits.memory %q: give a number with k, M, G, Ki, Mi, Gi or Ti, or set redis.maxmemory" $limit) -}}
{{- end -}}
{{- mulf (float64 $number) (index $units $unit) .Values.redis.maxmemoryPercent 0.01 | floor | int64 -}}
{{- end -}}
{{- end -}}

{{- define "jobpool.uiSelectorLabels" -}}
app.kubernetes.io/name: jobpool-ui
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
