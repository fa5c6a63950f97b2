# Sourced by run_flow.sh and run_mnist.sh: the five formulations of issue 27's study, each the
# train overrides that make it from the study's recipe.
# shellcheck shell=bash disable=SC2034  # used by the scripts that source it
declare -A OVERRIDES=(
  [vp]="formulation=vp" [edm]="formulation=edm"
  [flow_uniform]="formulation=flow formulation.time_distribution=uniform"
  [flow_logit_normal]="formulation=flow" [flow_logit_normal_ot]="formulation=flow formulation.coupling=ot"
)
