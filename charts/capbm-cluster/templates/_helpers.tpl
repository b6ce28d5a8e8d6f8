{{/*
The cluster's name: the value name, or the release name. Every object's name starts with it.
*/}}
{{- define "capbm.clusterName" -}}
{{- $n := .Values.name | default .Release.Name -}}
{{- if or (gt (len $n) 40) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $n)) -}}
{{- fail (printf "the cluster name %q (value name, or the release name when name is empty) is not a DNS label of at most 40 characters (lower-case letters, digits, '-'): set name" $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "capbm.labels" -}}
cluster.x-k8s.io/cluster-name: {{ include "capbm.clusterName" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: capbm-cluster
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
Metadata of a machine template. Templates are immutable in Cluster API: a changed spec is a new
template (its name carries a hash of the spec) and the MachineDeployment or KubeadmControlPlane
rolls its machines onto it. Helm keeps the old one (a rollout still needs it); the provider's
template garbage collector deletes it once nothing references it (label below).
Call with (dict "root" $ "name" NAME).
*/}}
{{- define "capbm.templateMetadata" -}}
name: {{ .name }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "capbm.labels" .root | nindent 2 }}
  {{- if .root.Values.templateGarbageCollection }}
  infrastructure.cluster.x-k8s.io/capbm-template-gc: "true"
  {{- end }}
annotations:
  helm.sh/resource-policy: keep
{{- end -}}

{{/*
BareMetalMachineTemplate spec from a hosts value ({pool, labels, checks}), as YAML with sorted keys
(the same values always give the same text, so the same hash).
*/}}
{{- define "capbm.machineTemplateSpec" -}}
{{- $s := dict -}}
{{- with .pool }}{{ $_ := set $s "poolRef" (dict "name" .) }}{{ end -}}
{{- with .labels }}{{ $_ := set $s "hostSelector" (dict "matchLabels" .) }}{{ end -}}
{{- with .checks }}{{ $_ := set $s "healthChecks" . }}{{ end -}}
{{- toYaml (dict "template" (dict "spec" $s)) -}}
{{- end -}}

{{/* "-" and the first 8 hex digits of the SHA-256 of a rendered spec: a template name's suffix. */}}
{{- define "capbm.hash" -}}
{{- printf "-%s" (. | sha256sum | trunc 8) -}}
{{- end -}}

{{/*
The KubeletConfiguration patch every machine gets (kubeadm applies /etc/kubernetes/patches).
*/}}
{{- define "capbm.kubeletPatchFile" -}}
{{- $k := .Values.kubeadm.kubelet -}}
{{- $cfg := deepCopy ($k.config | default dict) -}}
{{- if not (hasKey $cfg "cgroupDriver") }}{{ $_ := set $cfg "cgroupDriver" $k.cgroupDriver }}{{ end -}}
{{- if not (hasKey $cfg "failCgroupV1") }}{{ $_ := set $cfg "failCgroupV1" $k.failCgroupV1 }}{{ end -}}
{{- $_ := set $cfg "apiVersion" "kubelet.config.k8s.io/v1beta1" -}}
{{- $_ := set $cfg "kind" "KubeletConfiguration" -}}
{{- toYaml (dict "path" "/etc/kubernetes/patches/kubeletconfiguration0+strategic.yaml" "owner" "root:root" "permissions" "0644" "content" (toYaml $cfg)) -}}
{{- end -}}

{{/*
kube-proxy's configuration (value kubeadm.kubeProxy): CABPK has no field for it, so a file holds the
KubeProxyConfiguration document and a command appends it to the init configuration before kubeadm
init runs (kubeadm uploads it to the kube-proxy ConfigMap every node uses). Joining control-plane
machines have no /run/kubeadm/kubeadm.yaml and skip it.
*/}}
{{- define "capbm.kubeProxyPath" -}}/run/kubeadm/kube-proxy-configuration.yaml{{- end -}}
{{- define "capbm.kubeProxyFile" -}}
{{- $cfg := deepCopy .Values.kubeadm.kubeProxy -}}
{{- $_ := set $cfg "apiVersion" "kubeproxy.config.k8s.io/v1alpha1" -}}
{{- $_ := set $cfg "kind" "KubeProxyConfiguration" -}}
{{- toYaml (dict "path" (include "capbm.kubeProxyPath" .) "owner" "root:root" "permissions" "0644" "content" (printf "\n---\n%s" (toYaml $cfg))) -}}
{{- end -}}
{{- define "capbm.kubeProxyCommand" -}}
{{- printf "if [ -f /run/kubeadm/kubeadm.yaml ]; then cat %s >> /run/kubeadm/kubeadm.yaml; fi" (include "capbm.kubeProxyPath" .) -}}
{{- end -}}

{{/*
kubeadm's nodeRegistration: the node name and provider ID from the host's meta-data (CAPBM serves
them as cloud-init's ds.meta_data), node labels, taints, skipped preflight checks.
Call with (dict "root" $ "labels" MAP "taints" LIST).
*/}}
{{- define "capbm.nodeRegistration" -}}
{{- $args := list (dict "name" "provider-id" "value" "{{ ds.meta_data.provider_id }}") -}}
{{- with .labels -}}
{{- $kv := list -}}
{{- range $k, $v := . }}{{ $kv = append $kv (printf "%s=%s" $k $v) }}{{ end -}}
{{- $args = append $args (dict "name" "node-labels" "value" (join "," $kv)) -}}
{{- end -}}
{{- $r := dict "name" "{{ ds.meta_data.local_hostname }}" "kubeletExtraArgs" $args -}}
{{- with .root.Values.kubeadm.ignorePreflightErrors }}{{ $_ := set $r "ignorePreflightErrors" . }}{{ end -}}
{{- with .taints }}{{ $_ := set $r "taints" . }}{{ end -}}
{{- toYaml $r -}}
{{- end -}}

{{/*
A MachineHealthCheck: nodes are cattle, a machine whose Node or host stays unhealthy is deleted
and its owner makes a fresh one on another host. HostHealthy is the node agent's Node condition.
Call with (dict "root" $ "name" NAME "selector" MATCHLABELS "check" HEALTHCHECK-VALUE).
*/}}
{{- define "capbm.machineHealthCheck" -}}
{{- $c := .check -}}
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineHealthCheck
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "capbm.labels" .root | nindent 4 }}
spec:
  clusterName: {{ include "capbm.clusterName" .root }}
  selector:
    matchLabels:
      {{- toYaml .selector | nindent 6 }}
  checks:
    nodeStartupTimeoutSeconds: {{ $c.nodeStartupTimeoutSeconds }}
    unhealthyNodeConditions:
      - type: Ready
        status: Unknown
        timeoutSeconds: {{ $c.nodeNotReadyTimeoutSeconds }}
      - type: Ready
        status: 'False'
        timeoutSeconds: {{ $c.nodeNotReadyTimeoutSeconds }}
      - type: HostHealthy
        status: 'False'
        timeoutSeconds: {{ $c.hostUnhealthyTimeoutSeconds }}
      - type: HostHealthy
        status: Unknown
        timeoutSeconds: {{ $c.hostUnknownTimeoutSeconds }}
  {{- if and (hasKey $c "maxUnhealthy") (ne (toString $c.maxUnhealthy) "") }}
  remediation:
    triggerIf:
      unhealthyLessThanOrEqualTo: {{ $c.maxUnhealthy }}
  {{- end }}
{{- end -}}
