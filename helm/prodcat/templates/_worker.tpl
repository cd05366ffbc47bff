{{/*
A worker Deployment (`prodcat worker <role>`) and its headless metrics Service.
Arguments: root, role, agent (its values), target (TF Serving Service host:port or ""),
singleton (retrain trigger: Recreate, its own service account and volumes).
*/}}
{{- define "prodcat.worker" -}}
{{- $root := .root }}
{{- $fullname := include "prodcat.fullname" $root }}
{{- $component := printf "worker-%s" .role }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ .role }}
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" $component) | nindent 4 }}
  {{- if .singleton }}
  annotations:
    # One trigger at a time: two would launch duplicate training Jobs, so the old pod stops first.
    kube-score/ignore: deployment-strategy,deployment-replicas
  {{- else if $root.Values.keda.enabled }}
  annotations:
    # KEDA's HPA owns the replica count; a fixed spec.replicas would fight it on every upgrade.
    kube-score/ignore: deployment-replicas
  {{- end }}
spec:
  {{- if .singleton }}
  replicas: 1
  strategy:
    type: Recreate
  {{- else if not (or $root.Values.keda.enabled .agent.autoscaling.enabled) }}
  replicas: {{ .agent.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "prodcat.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "prodcat.labels" (dict "root" $root "component" $component) | nindent 8 }}
        prodcat.io/role: {{ .role }}
        {{- if .target }}
        prodcat.io/tfserving-client: "true"
        {{- end }}
      annotations:
        checksum/env: {{ include (print $root.Template.BasePath "/configmap-env.yaml") $root | sha256sum }}
        {{- if .singleton }}
        checksum/job: {{ include (print $root.Template.BasePath "/retrain-job.yaml") $root | sha256sum }}
        {{- end }}
    spec:
      {{- if .singleton }}
      serviceAccountName: {{ $fullname }}-retrain
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      terminationGracePeriodSeconds: {{ $root.Values.workers.terminationGracePeriodSeconds }}
      {{- include "prodcat.podScheduling" (dict "root" $root "spec" .agent "component" $component) | trim | nindent 6 }}
      containers:
        - name: worker
          image: {{ include "prodcat.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["worker", {{ .role | quote }}]
          {{- $extra := dict }}
          {{- if .target }}
          {{- $_ := set $extra "PRODCAT_SERVING__BACKEND" "tfserving" }}
          {{- $_ := set $extra "PRODCAT_SERVING__TARGET" .target }}
          {{- end }}
          {{- if .singleton }}
          {{- $_ := set $extra "PRODCAT_RETRAIN__LAUNCHER" "kubernetes" }}
          {{- $_ := set $extra "PRODCAT_RETRAIN__JOB_TEMPLATE" "/etc/prodcat/retrain/job.yaml" }}
          {{- end }}
          {{- include "prodcat.env" (dict "root" $root "extra" (merge (deepCopy .agent.env) $extra)) | trim | nindent 10 }}
          ports:
            - name: metrics
              containerPort: {{ $root.Values.workers.metricsPort }}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: {{ $root.Values.workers.probes.periodSeconds }}
            failureThreshold: {{ $root.Values.workers.probes.startupFailureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: {{ $root.Values.workers.probes.periodSeconds }}
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: metrics
            periodSeconds: {{ $root.Values.workers.probes.periodSeconds }}
            timeoutSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml .agent.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "prodcat.volumeMounts" (dict "root" $root "writeModels" .singleton) | trim | nindent 12 }}
            {{- if .singleton }}
            - name: retrain-work
              mountPath: /var/lib/prodcat/retrain
            - name: job-template
              mountPath: /etc/prodcat/retrain
              readOnly: true
            {{- end }}
      volumes:
        {{- include "prodcat.volumes" $root | trim | nindent 8 }}
        {{- if .singleton }}
        - name: retrain-work
          persistentVolumeClaim:
            claimName: {{ include "prodcat.pvc.retrain" $root }}
        - name: job-template
          configMap:
            name: {{ $fullname }}-retrain-job
        {{- end }}
---
# Headless: gives Prometheus (ServiceMonitor) the worker pods' metrics endpoints.
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-{{ .role }}-metrics
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" $component) | nindent 4 }}
    prodcat.io/metrics: worker
    prodcat.io/job: prodcat-{{ .role }}
spec:
  clusterIP: None
  selector:
    {{- include "prodcat.selectorLabels" (dict "root" $root "component" $component) | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $root.Values.workers.metricsPort }}
      targetPort: metrics
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}-{{ .role }}
  labels:
    {{- include "prodcat.labels" (dict "root" $root "component" $component) | nindent 4 }}
spec:
  maxUnavailable: {{ $root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "prodcat.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
{{- end }}
