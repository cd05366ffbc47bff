{{/* Names, labels and the pieces every prodcat pod shares. */}}

{{- define "prodcat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "prodcat.fullname" -}}
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

{{- define "prodcat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the release; with a component: that component's pods only. */}}
{{- define "prodcat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prodcat.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "prodcat.labels" -}}
helm.sh/chart: {{ include "prodcat.chart" .root }}
{{ include "prodcat.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: prodcat
{{- end }}

{{- define "prodcat.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Kafka: the bootstrap servers, and the credentials' sources after Strimzi's defaults. */}}
{{- define "prodcat.kafka.clusterName" -}}
{{- default (printf "%s-kafka" (include "prodcat.fullname" .)) .Values.kafka.strimzi.clusterName }}
{{- end }}

{{- define "prodcat.kafka.bootstrap" -}}
{{- if .Values.kafka.strimzi.enabled }}
{{- printf "%s-kafka-bootstrap:%d" (include "prodcat.kafka.clusterName" .) (int .Values.kafka.strimzi.listener.port) }}
{{- else }}
{{- .Values.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{- define "prodcat.kafka.strimziUser" -}}
{{- if and .Values.kafka.strimzi.enabled .Values.kafka.strimzi.user.enabled (ne .Values.kafka.strimzi.listener.authentication "none") }}
{{- include "prodcat.fullname" . }}
{{- end }}
{{- end }}

{{- define "prodcat.kafka.saslSecret" -}}
{{- default (include "prodcat.kafka.strimziUser" .) .Values.kafka.sasl.existingSecret }}
{{- end }}

{{- define "prodcat.kafka.saslUsername" -}}
{{- default (include "prodcat.kafka.strimziUser" .) .Values.kafka.sasl.username }}
{{- end }}

{{- define "prodcat.kafka.caSecret" -}}
{{- if .Values.kafka.tls.caSecret }}
{{- .Values.kafka.tls.caSecret }}
{{- else if and .Values.kafka.strimzi.enabled .Values.kafka.strimzi.listener.tls }}
{{- printf "%s-cluster-ca-cert" (include "prodcat.kafka.clusterName" .) }}
{{- end }}
{{- end }}

{{- define "prodcat.kafka.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "prodcat.kafka.tls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* Fails the render on settings that cannot work together. */}}
{{- define "prodcat.validate" -}}
{{- if include "prodcat.kafka.sasl" . }}
{{- if not .Values.kafka.sasl.mechanism }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.mechanism" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if not (include "prodcat.kafka.saslSecret" .) }}
{{- fail "SASL needs kafka.sasl.existingSecret (or kafka.strimzi.user.enabled)" }}
{{- end }}
{{- if not (or (include "prodcat.kafka.saslUsername" .) .Values.kafka.sasl.usernameKey) }}
{{- fail "SASL needs kafka.sasl.username or kafka.sasl.usernameKey" }}
{{- end }}
{{- end }}
{{- if and .Values.kafka.strimzi.enabled (ne .Values.kafka.strimzi.listener.authentication "none") (not (include "prodcat.kafka.sasl" .)) }}
{{- fail "the Strimzi listener authenticates with SCRAM: set kafka.securityProtocol to SASL_SSL (or SASL_PLAINTEXT without listener.tls)" }}
{{- end }}
{{- if and .Values.kafka.strimzi.enabled .Values.kafka.strimzi.listener.tls (not (include "prodcat.kafka.tls" .)) }}
{{- fail "the Strimzi listener uses TLS: set kafka.securityProtocol to SSL or SASL_SSL" }}
{{- end }}
{{- $inputs := include "prodcat.agentInputs" . | fromYaml }}
{{- range $role, $topicKey := $inputs }}
{{- $agent := index $.Values.agents $role }}
{{- $topic := index $.Values.kafka.topics $topicKey }}
{{- if and $agent.enabled (gt (int $agent.autoscaling.maxReplicas) (int $topic.partitions)) }}
{{- fail (printf "agents.%s.autoscaling.maxReplicas=%d exceeds the %d partitions of %s: extra consumers would sit idle" $role (int $agent.autoscaling.maxReplicas) (int $topic.partitions) $topic.name) }}
{{- end }}
{{- if and $agent.enabled (gt (int $agent.replicas) (int $topic.partitions)) }}
{{- fail (printf "agents.%s.replicas=%d exceeds the %d partitions of %s" $role (int $agent.replicas) (int $topic.partitions) $topic.name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The input topic (a key of kafka.topics) of each scalable role. */}}
{{- define "prodcat.agentInputs" -}}
normalize: raw
classify: normalized
embed: normalized
sample: predictions
drift: predictions
mappings: normalized
{{- end }}

{{/* The Service of a TF Serving model ("classifier" or "embedder"). */}}
{{- define "prodcat.tfserving.name" -}}
{{- printf "%s-tfserving-%s" (include "prodcat.fullname" .root) .model }}
{{- end }}

{{- define "prodcat.pvc.models" -}}
{{- default (printf "%s-models" (include "prodcat.fullname" .)) .Values.modelStore.existingClaim }}
{{- end }}

{{- define "prodcat.pvc.retrain" -}}
{{- default (printf "%s-retrain" (include "prodcat.fullname" .)) .Values.retrainJob.workDir.existingClaim }}
{{- end }}

{{/*
Environment from the shared ConfigMap, the Secrets (Kafka SASL, Milvus token) and `extra`
(a dict of per-pod variables) and `refs` (more env entries). Arguments: root, extra, refs.
*/}}
{{- define "prodcat.env" -}}
{{- $root := .root }}
{{- $env := list }}
{{- if include "prodcat.kafka.sasl" $root }}
{{- $secret := include "prodcat.kafka.saslSecret" $root }}
{{- with $root.Values.kafka.sasl.usernameKey }}
{{- $env = append $env (dict "name" "PRODCAT_KAFKA__SASL_USERNAME" "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" .))) }}
{{- end }}
{{- $env = append $env (dict "name" "PRODCAT_KAFKA__SASL_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" $root.Values.kafka.sasl.passwordKey))) }}
{{- end }}
{{- with $root.Values.milvus.token.existingSecret }}
{{- $env = append $env (dict "name" "PRODCAT_MILVUS__TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $root.Values.milvus.token.key))) }}
{{- end }}
{{- range $name, $value := .extra }}
{{- $env = append $env (dict "name" $name "value" ($value | toString)) }}
{{- end }}
{{- range .refs }}
{{- $env = append $env . }}
{{- end }}
envFrom:
  - configMapRef:
      name: {{ include "prodcat.fullname" $root }}-env
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Volumes every prodcat pod has: scratch, Faust's state, the model store, the Kafka CA. */}}
{{- define "prodcat.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
- name: state
  emptyDir:
    sizeLimit: {{ .Values.workers.stateSizeLimit }}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "prodcat.pvc.models" . }}
{{- with include "prodcat.kafka.caSecret" . }}
- name: kafka-ca
  secret:
    secretName: {{ . }}
    items:
      - key: {{ $.Values.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- end }}

{{/* Arguments: root, writeModels (the retrain trigger and Job write new versions). */}}
{{- define "prodcat.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: state
  mountPath: /var/lib/prodcat/faust
- name: models
  mountPath: {{ .root.Values.modelStore.mountPath }}
  readOnly: {{ not .writeModels }}
{{- if include "prodcat.kafka.caSecret" .root }}
- name: kafka-ca
  mountPath: /etc/prodcat/kafka-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level settings: pull secrets, security context, scheduling with a soft anti-affinity. */}}
{{- define "prodcat.podScheduling" -}}
{{- $root := .root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .spec.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
{{- if .spec.affinity }}
  {{- toYaml .spec.affinity | nindent 2 }}
{{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "prodcat.selectorLabels" (dict "root" $root "component" .component) | nindent 14 }}
{{- end }}
{{- if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ $root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "prodcat.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
{{- end }}
{{- end }}
