{{/*
The HostProcessPolicy that admits the agent DaemonSet, from the same values that render it: its
namespace, its service account, its exact image (by digest when one is given), its account, its
volumes (ConfigMaps only, plus the projected service account token of the install step) and its
limits as maxima. It names no RuntimeClass: the agent installs the `hostgate` handler, so it must
run under the node's default one (its namespace is exempt from the webhook, which never routes it).
*/}}
{{- define "hostgate.agentPolicy" -}}
apiVersion: hostgate.io/v1alpha1
kind: HostProcessPolicy
metadata:
  name: {{ include "hostgate.agentPolicyName" . }}
  annotations:
    hostgate.io/title: hostgate node agent
    hostgate.io/severity: high
    hostgate.io/description: >-
      Rendered by the hostgate chart: admits its own agent DaemonSet ({{ include "hostgate.agentName" . }}
      in {{ .Release.Namespace }}), which syncs the approval keys and policies to Windows nodes.
spec:
  mode: Enforce
  match:
    namespaces: [{{ .Release.Namespace | quote }}]
    serviceAccounts: [{{ printf "%s/%s" .Release.Namespace (include "hostgate.agentServiceAccountName" .) | quote }}]
  allow:
    images: [{{ include "hostgate.agentImage" . | quote }}]
    runAsUserNames: [{{ .Values.agent.runAsUserName | quote }}]
    volumes:
      types: [configMap{{ if include "hostgate.agentInstalls" . }}, projected{{ end }}]
  require:
    imageDigest: {{ not (empty .Values.agent.image.digest) }}
    limits:
      cpu: {{ .Values.agent.resources.limits.cpu | quote }}
      memory: {{ .Values.agent.resources.limits.memory | quote }}
  defaults:
    runAsUserName: {{ .Values.agent.runAsUserName | quote }}
{{- end -}}
