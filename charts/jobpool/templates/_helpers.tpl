{{- define "jobpool.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobpool.serviceAccountName" -}}
{{- default (include "jobpool.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "jobpool.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobpool
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "jobpool.labels" -}}
app.kubernetes.io/name: jobpool-operator
{{ include "jobpool.commonLabels" . }}
{{- end -}}

{{/* The bundled Redis's objects: named for what they are, not for the operator. */}}
{{- define "jobpool.redisLabels" -}}
app.kubernetes.io/name: jobpool-redis
app.kubernetes.io/component: queue
{{ include "jobpool.commonLabels" . }}
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
{{- else if and .Values.redis.enabled .Values.redis.auth.enabled .Values.redis.auth.existingSecret }}
{{- /* the user's Secret holds only the password: the kubelet puts it into the URL */}}
- name: JOBPOOL_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.auth.existingSecret }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
- name: JOBPOOL_ADMIN_QUEUE_URL
  value: {{ printf "redis://:$(JOBPOOL_REDIS_PASSWORD)@%s" (include "jobpool.redisAddress" .) | quote }}
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

{{- /* The Redis image: by digest when redis.image.digest is set (the default pins one), so the
image that runs is the one reviewed; the tag then only says which release the digest is. */}}
{{- define "jobpool.redisImage" -}}
{{- $image := .Values.redis.image -}}
{{- if $image.digest -}}
{{- printf "%s:%s@%s" $image.repository $image.tag $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $image.tag -}}
{{- end -}}
{{- end -}}

{{- define "jobpool.uiSelectorLabels" -}}
app.kubernetes.io/name: jobpool-ui
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The operator image (also the hooks'): a digest wins over the tag. */}}
{{- define "jobpool.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets of every pod of the chart, as a pod spec field (or nothing). */}}
{{- define "jobpool.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A size in bytes: Kubernetes quantities (1Gi, 500M) and Redis units (400mb, 1g, 419430400). */}}
{{- define "jobpool.bytes" -}}
{{- $text := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text -}}
{{- $unit := trimPrefix $number $text -}}
{{- $units := dict "" 1 "b" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "kb" 1024 "mb" 1048576 "gb" 1073741824 "m" 1000000 "g" 1000000000 -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "cannot read %q as a size" $text) -}}
{{- end -}}
{{- mulf (float64 $number) (index $units $unit) | floor | int64 -}}
{{- end -}}
