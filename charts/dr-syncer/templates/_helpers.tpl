{{/* Object names: the release name, with "dr-syncer" added unless it is in it already. */}}
{{- define "dr-syncer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "dr-syncer" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-dr-syncer" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name and component are fixed: `dr-syncer controller --local`
finds the in-cluster Deployment by exactly these two labels.
*/}}
{{- define "dr-syncer.selectorLabels" -}}
app.kubernetes.io/name: dr-syncer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "dr-syncer.labels" -}}
{{ include "dr-syncer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dr-syncer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dr-syncer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dr-syncer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "dr-syncer.agentNamespace" -}}
{{- default "dr-syncer-agent" .Values.pvcSync.namespace -}}
{{- end -}}

{{/* The pvcSync values as a RemoteCluster spec.pvcSync object: unset and empty fields left out. */}}
{{- define "dr-syncer.pvcSyncSpec" -}}
{{- $out := dict -}}
{{- range $k, $v := .Values.pvcSync -}}
{{- if or (kindIs "bool" $v) (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) $v -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The subject every binding names. */}}
{{- define "dr-syncer.subject" -}}
- kind: ServiceAccount
  name: {{ include "dr-syncer.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/* Rules on dr-syncer's own API: a Role in the release namespace, or a ClusterRole with watchAllNamespaces. */}}
{{- define "dr-syncer.crRules" -}}
# The informers list and watch Replications and RemoteClusters.
- apiGroups: ["dr-syncer.io"]
  resources: ["replications", "remoteclusters"]
  verbs: ["get", "list", "watch"]
# Replications: the clean-up finalizer and clearing the dr-syncer.io/sync-now annotation (patches).
- apiGroups: ["dr-syncer.io"]
  resources: ["replications"]
  verbs: ["patch"]
# Status of both (merge patches of the status subresource).
- apiGroups: ["dr-syncer.io"]
  resources: ["replications/status", "remoteclusters/status"]
  verbs: ["patch"]
# Events on Replications and RemoteClusters (a repeated Event is patched with its new count).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Secrets in a namespace that holds Replications and RemoteClusters. */}}
{{- define "dr-syncer.secretRules" -}}
# Read: RemoteCluster kubeconfigs and Git credentials. Create/update: the per-Replication SOPS
# digest key and the PVC-sync SSH keys (rotation replaces them). Patch: the
# dr-syncer.io/git-credentials-in-use finalizer on Git credentials Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update", "patch"]
{{- end -}}
