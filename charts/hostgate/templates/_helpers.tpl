{{/*
Names. Kubernetes names (and label values) are at most 63 characters: the full name is cut to
63, and a component name keeps its suffix whole by cutting the prefix instead, so two components
never collide on a long release name.
*/}}
{{- define "hostgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hostgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>" within 63 characters. Call with (list $ "suffix"). */}}
{{- define "hostgate.componentName" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $prefix := include "hostgate.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $prefix $suffix -}}
{{- end -}}

{{- define "hostgate.webhookName" -}}{{ include "hostgate.componentName" (list . "webhook") }}{{- end -}}
{{- define "hostgate.serviceName" -}}{{ include "hostgate.componentName" (list . "webhook") }}{{- end -}}
{{- define "hostgate.tlsSecretName" -}}{{ include "hostgate.componentName" (list . "webhook-tls") }}{{- end -}}
{{- define "hostgate.signingSecretName" -}}
{{- default (include "hostgate.componentName" (list . "signing-key")) .Values.approvals.existingSecret -}}
{{- end -}}
{{- define "hostgate.publicKeysName" -}}{{ include "hostgate.componentName" (list . "public-keys") }}{{- end -}}
{{- define "hostgate.trustedKeysName" -}}{{ include "hostgate.componentName" (list . "trusted-keys") }}{{- end -}}
{{- define "hostgate.policiesName" -}}{{ include "hostgate.componentName" (list . "policies") }}{{- end -}}
{{- define "hostgate.agentName" -}}{{ include "hostgate.componentName" (list . "agent") }}{{- end -}}
{{- define "hostgate.agentPolicyName" -}}{{ include "hostgate.componentName" (list . "agent") }}{{- end -}}
{{- define "hostgate.clientCAName" -}}
{{- .Values.webhook.clientCA.existingConfigMap | default (include "hostgate.componentName" (list . "client-ca")) -}}
{{- end -}}
{{- define "hostgate.clientCA" -}}
{{- if or .Values.webhook.clientCA.pem .Values.webhook.clientCA.existingConfigMap }}true{{ end -}}
{{- end -}}
{{- define "hostgate.testName" -}}{{ include "hostgate.componentName" (list . "test") }}{{- end -}}

{{- define "hostgate.webhookServiceAccountName" -}}
{{- default (include "hostgate.webhookName" .) .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- define "hostgate.agentServiceAccountName" -}}
{{- default (include "hostgate.agentName" .) .Values.agent.serviceAccount.name -}}
{{- end -}}

{{/* The Service's DNS name, which the serving certificate names. */}}
{{- define "hostgate.serviceHost" -}}
{{- printf "%s.%s.svc" (include "hostgate.serviceName" .) .Release.Namespace -}}
{{- end -}}

{{/*
Labels. Selector labels are stable across upgrades (no version, no chart): a Deployment's or a
PodDisruptionBudget's selector cannot change. Call with (list $ "component").
*/}}
{{- define "hostgate.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "hostgate.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "hostgate.labels" -}}
{{- $root := index . 0 -}}
{{ include "hostgate.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: hostgate
{{- end -}}

{{/* image reference: repository@digest when a digest is given, else repository:tag. Call with (list $ .Values.x.image "default-tag"). */}}
{{- define "hostgate.image" -}}
{{- $image := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default (index . 2) $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "hostgate.webhookImage" -}}
{{- include "hostgate.image" (list . .Values.webhook.image .Chart.AppVersion) -}}
{{- end -}}
{{- define "hostgate.agentImage" -}}
{{- include "hostgate.image" (list . .Values.agent.image (printf "%s-windows" .Chart.AppVersion)) -}}
{{- end -}}
{{- define "hostgate.testImage" -}}
{{- include "hostgate.image" (list . .Values.tests.image "latest") -}}
{{- end -}}

{{/*
The node half: the runtime handler `hostgate-agent install` registers and the node label it sets
once the handler answers (agent/src/install: HANDLER, NODE_LABEL). Fixed by the installer.
*/}}
{{- define "hostgate.handler" -}}hostgate{{- end -}}
{{- define "hostgate.nodeLabelKey" -}}hostgate.io/node{{- end -}}
{{- define "hostgate.nodeLabelValue" -}}ready{{- end -}}
{{/* The node directory the shim reads when containerd's environment does not name one. */}}
{{- define "hostgate.shimNodeDir" -}}C:\ProgramData\hostgate{{- end -}}
{{/* Whether the agent's init step runs (install or uninstall). */}}
{{- define "hostgate.agentInstalls" -}}
{{- if and .Values.agent.enabled .Values.agent.install.enabled }}true{{ end -}}
{{- end -}}
{{/* Whether the webhook names the RuntimeClass (not while the nodes are being cleaned up). */}}
{{- define "hostgate.routesPods" -}}
{{- if and .Values.runtimeClass.enabled (eq .Values.agent.install.action "install") }}true{{ end -}}
{{- end -}}

{{/* Whether the webhook reads policy files (the policies ConfigMap). */}}
{{- define "hostgate.usesPolicyFiles" -}}
{{- if ne .Values.policies.source "cluster" }}true{{ end -}}
{{- end -}}
{{/* Whether the webhook watches HostProcessPolicy objects and namespaces. */}}
{{- define "hostgate.usesCluster" -}}
{{- if ne .Values.policies.source "files" }}true{{ end -}}
{{- end -}}
{{/* Whether the webhook talks to the API server at all (and so needs a token). */}}
{{- define "hostgate.needsApi" -}}
{{- if or (include "hostgate.usesCluster" .) .Values.approvals.enabled }}true{{ end -}}
{{- end -}}

{{/*
CEL: does the pod spec at `spec` (a CEL expression) or its metadata at `meta` request HostProcess
power? Pod level, any container list, or the privileged annotations. Every step through an
optional field is guarded with has(): in admission CEL the object is untyped, and a missing field
is an error, which with failurePolicy Fail would refuse the request. Call with
(dict "spec" "object.spec" "meta" "object.metadata" "specGuard" "" "metaGuard" "").
*/}}
{{- define "hostgate.cel.hostProcessIn" -}}
{{- $hp := "has(%[1]s.securityContext) && has(%[1]s.securityContext.windowsOptions) && has(%[1]s.securityContext.windowsOptions.hostProcess) && %[1]s.securityContext.windowsOptions.hostProcess == true" -}}
{{- $s := .spec -}}
{{- $m := .meta -}}
{{- $parts := list (printf "(%s)" (printf $hp $s)) -}}
{{- range $list := list "containers" "initContainers" "ephemeralContainers" -}}
{{- $parts = append $parts (printf "(has(%s.%s) && %s.%s.exists(c, %s))" $s $list $s $list (printf $hp "c")) -}}
{{- end -}}
{{- $specExpr := join " ||\n  " $parts -}}
{{- if .specGuard -}}
{{- $specExpr = printf "%s && (\n  %s)" .specGuard $specExpr -}}
{{- else -}}
{{- $specExpr = printf "(\n  %s)" $specExpr -}}
{{- end -}}
{{- $ann := printf "(has(%[1]s.annotations) && ('microsoft.com/hostprocess-inherit-user' in %[1]s.annotations || 'microsoft.com/hostprocess-rootfs-location' in %[1]s.annotations))" $m -}}
{{- if .metaGuard -}}
{{- $ann = printf "(%s && %s)" .metaGuard $ann -}}
{{- end -}}
{{- printf "(%s) ||\n%s" $specExpr $ann -}}
{{- end -}}

{{- define "hostgate.cel.pod" -}}
{{- include "hostgate.cel.hostProcessIn" (dict "spec" "object.spec" "meta" "object.metadata" "specGuard" "has(object.spec)" "metaGuard" "has(object.metadata)") -}}
{{- end -}}
{{- define "hostgate.cel.template" -}}
{{- include "hostgate.cel.hostProcessIn" (dict "spec" "object.spec.template.spec" "meta" "object.spec.template.metadata" "specGuard" "has(object.spec) && has(object.spec.template) && has(object.spec.template.spec)" "metaGuard" "has(object.spec) && has(object.spec.template) && has(object.spec.template.metadata)") -}}
{{- end -}}
{{- define "hostgate.cel.cronJob" -}}
{{- include "hostgate.cel.hostProcessIn" (dict "spec" "object.spec.jobTemplate.spec.template.spec" "meta" "object.spec.jobTemplate.spec.template.metadata" "specGuard" "has(object.spec) && has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && has(object.spec.jobTemplate.spec.template) && has(object.spec.jobTemplate.spec.template.spec)" "metaGuard" "has(object.spec) && has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && has(object.spec.jobTemplate.spec.template) && has(object.spec.jobTemplate.spec.template.metadata)") -}}
{{- end -}}

{{/* Settings every webhook of both configurations shares. Call with (dict "root" $ "path" "/validate"). */}}
{{- define "hostgate.webhookCommon" -}}
{{- $root := .root -}}
admissionReviewVersions: ["v1"]
sideEffects: None
failurePolicy: {{ $root.Values.admission.failurePolicy }}
matchPolicy: Equivalent
clientConfig:
  service:
    name: {{ include "hostgate.serviceName" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ .path }}
    port: {{ $root.Values.webhook.service.port }}
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (prepend $root.Values.admission.exemptNamespaces $root.Release.Namespace | uniq) }}
        - {{ . | quote }}
        {{- end }}
    {{- with $root.Values.admission.namespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- with $root.Values.admission.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Key of the private key in the signing Secret. */}}
{{- define "hostgate.signingKeyFile" -}}
{{- if .Values.approvals.existingSecret }}{{ .Values.approvals.existingSecretKey }}{{ else }}signing.key{{ end -}}
{{- end -}}

{{/* Seconds: a Go duration ("5s", "1m30s", "250ms") rounded up. */}}
{{- define "hostgate.seconds" -}}
{{- $d := . -}}
{{- $total := 0.0 -}}
{{- range $m := regexFindAll "[0-9.]+(ms|us|µs|ns|s|m|h)" $d -1 -}}
{{- $n := regexFind "^[0-9.]+" $m | float64 -}}
{{- $unit := regexReplaceAll "^[0-9.]+" $m "" -}}
{{- if eq $unit "h" }}{{ $total = addf $total (mulf $n 3600) }}
{{- else if eq $unit "m" }}{{ $total = addf $total (mulf $n 60) }}
{{- else if eq $unit "s" }}{{ $total = addf $total $n }}
{{- else if eq $unit "ms" }}{{ $total = addf $total (divf $n 1000) }}
{{- end -}}
{{- end -}}
{{- ceil $total | int -}}
{{- end -}}

{{/* terminationGracePeriodSeconds of the webhook: shutdown delay + timeout + 5 s of margin. */}}
{{- define "hostgate.gracePeriod" -}}
{{- add (include "hostgate.seconds" .Values.webhook.shutdown.delay | int) (include "hostgate.seconds" .Values.webhook.shutdown.timeout | int) 5 -}}
{{- end -}}

{{/* The AdmissionReview the `helm test` pod posts: a HostProcess pod in the default namespace. */}}
{{- define "hostgate.testReview" -}}
{{- $pod := dict "apiVersion" "v1" "kind" "Pod" "metadata" (dict "name" "hostgate-helm-test" "namespace" "default") "spec" (dict "hostNetwork" true "securityContext" (dict "windowsOptions" (dict "hostProcess" true "runAsUserName" "NT AUTHORITY\\Local service")) "containers" (list (dict "name" "hpc" "image" "mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0"))) -}}
{{- $request := dict "uid" "7d1d7b3c-0000-4000-8000-000000000001" "kind" (dict "group" "" "version" "v1" "kind" "Pod") "resource" (dict "group" "" "version" "v1" "resource" "pods") "requestKind" (dict "group" "" "version" "v1" "kind" "Pod") "requestResource" (dict "group" "" "version" "v1" "resource" "pods") "name" "hostgate-helm-test" "namespace" "default" "operation" "CREATE" "userInfo" (dict "username" "system:serviceaccount:hostgate:helm-test") "object" $pod "oldObject" nil "dryRun" true "options" (dict "apiVersion" "meta.k8s.io/v1" "kind" "CreateOptions") -}}
{{- dict "apiVersion" "admission.k8s.io/v1" "kind" "AdmissionReview" "request" $request | toJson -}}
{{- end -}}
