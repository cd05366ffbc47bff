{{/*
An HTTP process of the prodcat image (the web UI or the API): Deployment, Service, PDB, Ingress.
Arguments: root, component ("web" or "api"), spec (its values), args, volumes, mounts (YAML
lists), strategy ("" or "Recreate"), target (TF Serving host:port for the embedder, or ""),
writeModels (mount the model store read-write; default read-only).
*/}}
{{- define "prodcat.http" -}}
{{- $root := .root }}
{{- $fullname := include "prodcat.fullname" $root }}
{{- $name := printf "%s-%s" $fullname .component }}
{{- $spec := .spec }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" .component) | nindent 4 }}
  {{- if eq .component "web" }}
  annotations:
    # One replica by design (annotation leases live in the process); with its ReadWriteOnce
    # volume the old pod stops before the new one starts.
    kube-score/ignore: deployment-strategy,deployment-replicas
  {{- end }}
spec:
  replicas: {{ $spec.replicas }}
  {{- with .strategy }}
  strategy:
    type: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "prodcat.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "prodcat.labels" (dict "root" $root "component" .component) | nindent 8 }}
        {{- if .target }}
        prodcat.io/tfserving-client: "true"
        {{- end }}
      annotations:
        checksum/env: {{ include (print $root.Template.BasePath "/configmap-env.yaml") $root | sha256sum }}
    spec:
      automountServiceAccountToken: false
      {{- include "prodcat.podScheduling" (dict "root" $root "spec" $spec "component" .component) | trim | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "prodcat.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          {{- $extra := dict }}
          {{- if .target }}
          {{- $_ := set $extra "PRODCAT_SERVING__BACKEND" "tfserving" }}
          {{- $_ := set $extra "PRODCAT_SERVING__TARGET" .target }}
          {{- end }}
          {{- with .extraEnv }}
          {{- $extra = merge $extra . }}
          {{- end }}
          {{- include "prodcat.env" (dict "root" $root "extra" $extra "refs" .secretEnv) | trim | nindent 10 }}
          ports:
            - name: http
              containerPort: {{ $spec.port }}
              protocol: TCP
          # Listening is enough to have started: the web UI catches up with its topics after
          # that (minutes for a large catalogue the first time), and readiness keeps traffic
          # away until it has.
          startupProbe:
            tcpSocket:
              port: http
            periodSeconds: 5
            failureThreshold: 60
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          livenessProbe:
            tcpSocket:
              port: http
            periodSeconds: 20
            timeoutSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml $spec.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "prodcat.volumeMounts" (dict "root" $root "writeModels" (default false .writeModels)) | trim | nindent 12 }}
            {{- with .mounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "prodcat.volumes" $root | trim | nindent 8 }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" .component) | nindent 4 }}
    prodcat.io/metrics: {{ .component }}
    prodcat.io/job: prodcat-{{ .component }}
spec:
  type: {{ $spec.service.type }}
  selector:
    {{- include "prodcat.selectorLabels" (dict "root" $root "component" .component) | nindent 4 }}
  ports:
    - name: http
      port: {{ $spec.service.port }}
      targetPort: http
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ $root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "prodcat.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
{{- if $spec.ingress.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ $name }}
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" .component) | nindent 4 }}
  {{- with $spec.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $spec.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with $spec.ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range $spec.ingress.hosts }}
    - host: {{ .host | quote }}
      http:
        paths:
          {{- range .paths }}
          - path: {{ .path }}
            pathType: {{ .pathType }}
            backend:
              service:
                name: {{ $name }}
                port:
                  name: http
          {{- end }}
    {{- end }}
{{- end }}
{{- end }}
