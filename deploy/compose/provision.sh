#!/usr/bin/env bash
# Provision a data space of one coordinator and two provider nodes, each party in its own directory under
# $SPACE (in compose: one volume per party, mounted at the same path in every container that uses it).
#
# What it does is what each party's operator would type on its own machine: the CA operator creates the CA and
# issues identities (server certificates name the host each server is reached at), each provider initialises
# its node with its share of the Lens drone patent families and a training offer and hands its SuperNode's
# public key to the coordinator's operator, who writes the coordinator's settings. Here one job does it all,
# so the CA key sits in its own directory ($SPACE/ca) that no serving container mounts.
#
# Exercised by tests/deploy/test_namespaces.py (with host addresses on a namespace network instead of the
# compose service names). Re-running on a provisioned space does nothing; a half-provisioned one must be
# removed first (`docker compose down -v`), as the CA refuses to be created twice.
set -euo pipefail

SPACE=${SPACE:-/space}
IPSPACE=${IPSPACE:-ipspace}                   # the ipspace command (tests pass their virtualenv's)
COORDINATOR_HOST=${COORDINATOR_HOST:-coordinator}
NODE_US_HOST=${NODE_US_HOST:-node-us}
NODE_EU_HOST=${NODE_EU_HOST:-node-eu}
NODE_PORT=${NODE_PORT:-50051}
API_PORT=${API_PORT:-8443}
DATA_DIR=${DATA_DIR:-}                        # provider-us.csv and provider-eu.csv; default: the whole sample
DATASET=lens_families
OFFER_ID=families-valuation
PURPOSE=valuation-research
EPSILON_BUDGET=${EPSILON_BUDGET:-8.0}

if [[ -f $SPACE/coordinator/coordinator.json ]]; then
    echo "provision: $SPACE is already provisioned; nothing to do"
    exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT  # node identities are issued here, then copied into each node by 'node init'

if [[ -z $DATA_DIR ]]; then
    DATA_DIR=$scratch/data
    "$IPSPACE" data partition "$DATA_DIR" --providers 3  # US / Europe / Asia-Pacific; two are used here
fi

echo "provision: CA in $SPACE/ca"
"$IPSPACE" ca init "$SPACE/ca"

issue() {  # issue DIR NAME ORG ROLE [HOST]
    local host_option=()
    [[ -n ${5:-} ]] && host_option=(--host "$5")
    "$IPSPACE" identity issue "$1" --ca "$SPACE/ca" --name "$2" --org "$3" --role "$4" "${host_option[@]}"
}

provision_node() {  # provision_node NAME ORG HOST PARTITION
    local name=$1 org=$2 host=$3 partition=$4
    issue "$scratch/$name" "$name" "$org" provider "$host"
    "$IPSPACE" node init "$SPACE/$name" --name "$name" --org "$org" --identity "$scratch/$name" \
        --dataset "$DATASET=$DATA_DIR/$partition.csv" --id-field publication_number \
        --description "Lens patent families on drones held by $org" \
        --source "Lens.org patent families on drones (2016 export); Lens.org terms: attribution required" \
        --listen "$host:$NODE_PORT"
    # Two nodes cannot form a SecAgg+ cohort (it needs three), so the offer asks for no minimum cohort.
    cat > "$SPACE/$name/offers/$OFFER_ID.json" <<EOF
{"offer_id": "$OFFER_ID", "provider_org": "$org", "dataset": "$DATASET", "actions": ["train"],
 "constraints": {"purposes": ["$PURPOSE"], "epsilon": $EPSILON_BUDGET, "delta": 1e-5, "model_export": true},
 "description": "federated valuation training with DP-SGD at the node"}
EOF
    # The provider hands its SuperNode's public key (never the private one) to the coordinator's operator.
    mkdir -p "$SPACE/coordinator/admit"
    "$IPSPACE" node flower-key "$SPACE/$name" > "$SPACE/coordinator/admit/$name.pub"
}

provision_node node-us us-patent-office "$NODE_US_HOST" provider-us
provision_node node-eu eu-ip-exchange "$NODE_EU_HOST" provider-eu

issue "$SPACE/coordinator/identity" coordinator data-space-operator coordinator "$COORDINATOR_HOST"
issue "$SPACE/builder/identity" modeller acme-robotics builder
issue "$SPACE/regulator/identity" inspector ip-regulator regulator

# Written last: its presence marks a complete provisioning.
"$IPSPACE" coordinator init "$SPACE/coordinator" --identity "$SPACE/coordinator/identity" \
    --host "$COORDINATOR_HOST" --port "$API_PORT" \
    --node "node-us=$NODE_US_HOST:$NODE_PORT" --node "node-eu=$NODE_EU_HOST:$NODE_PORT"
echo "provision: done"
