# Container image targets for sm-toolkit. An includable fragment: the top-level Makefile does
#   include container/container.mk
# and it also works alone: make -f container/container.mk build
#
#   build   offline base (if missing) + wheelhouse + image, `docker build --network none`
#   push    ECR login, tag, push (DRY_RUN=1 prints the commands instead of running them)
#   local   the container test tier: SageMaker local mode against the built image
#
# Variables (override on the command line or in the environment):
#   IMAGE        sm-toolkit:latest          tag of the built image
#   BASE_IMAGE   sm-toolkit-base:bookworm   made here from Debian packages when it is this default
#   INSTALL      full                       full | toolkit (toolkit: on top of an AWS DLC)
#   NETWORK      none                       docker build --network (default for public bases)
#   AWS_REGION   us-east-1   ECR_REPO sm-toolkit   AWS_ACCOUNT_ID (default: from aws sts)
#   SMC_PIP, SMC_PYTHON  .venv/bin/pip, .venv/bin/python (the host venv; must be Python 3.11)

SMC_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
SMC_ROOT := $(abspath $(SMC_DIR)/..)

IMAGE ?= sm-toolkit:latest
SMC_DEFAULT_BASE := sm-toolkit-base:bookworm
BASE_IMAGE ?= $(SMC_DEFAULT_BASE)
INSTALL ?= full
NETWORK ?= none
SMC_PIP ?= $(SMC_ROOT)/.venv/bin/pip
SMC_PYTHON ?= $(SMC_ROOT)/.venv/bin/python
DOCKER ?= docker
AWS_REGION ?= us-east-1
ECR_REPO ?= sm-toolkit
IMAGE_TAG ?= $(if $(findstring :,$(IMAGE)),$(lastword $(subst :, ,$(IMAGE))),latest)
DRY_RUN ?=

SMC_CONTEXT := $(SMC_ROOT)/container/build/context
SMC_WHEELS := $(SMC_ROOT)/container/wheelhouse
SMC_RUN := $(if $(filter 1 true yes,$(DRY_RUN)),@echo,)

.PHONY: build container-base container-wheelhouse container-context push local

build: container-base container-wheelhouse container-context
	cd $(SMC_ROOT) && $(DOCKER) build --network $(NETWORK) -f container/Dockerfile \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg INSTALL=$(INSTALL) -t $(IMAGE) $(SMC_CONTEXT)
	@$(DOCKER) image inspect -f 'built {{index .RepoTags 0}}: {{.Size}} bytes' $(IMAGE)

# Only the default base is ours to make; any other BASE_IMAGE is pulled by docker build.
container-base:
	@if [ "$(BASE_IMAGE)" = "$(SMC_DEFAULT_BASE)" ] && \
	    ! $(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
	  $(SMC_ROOT)/container/make_offline_base.sh $(BASE_IMAGE); \
	fi

# Third-party wheels only when the requirements change; the project wheel every time.
$(SMC_WHEELS)/.deps-stamp: $(SMC_ROOT)/container/requirements.txt $(SMC_ROOT)/container/constraints.txt
	PIP=$(SMC_PIP) $(SMC_ROOT)/container/make_wheelhouse.sh deps
	touch $@

container-wheelhouse: $(SMC_WHEELS)/.deps-stamp
	PIP=$(SMC_PIP) $(SMC_ROOT)/container/make_wheelhouse.sh project

# The build context holds only what the image needs; third-party wheels are hard links, and
# the project (launcher, entrypoints, sm_toolkit installed from its wheel) sits apart so that
# changing it leaves the cached venv layer alone.
container-context:
	rm -rf $(SMC_CONTEXT) && mkdir -p $(SMC_CONTEXT)/project/bin $(SMC_CONTEXT)/project/entrypoints
	cp -al $(SMC_WHEELS) $(SMC_CONTEXT)/wheelhouse
	rm -f $(SMC_CONTEXT)/wheelhouse/.deps-stamp $(SMC_CONTEXT)/wheelhouse/sm_toolkit-*.whl
	cd $(SMC_ROOT)/container && cp requirements.txt constraints.txt $(SMC_CONTEXT)/ \
	  && cp entry.sh $(SMC_CONTEXT)/project/bin/
	chmod 755 $(SMC_CONTEXT)/project/bin/entry.sh
	if [ -d $(SMC_ROOT)/entrypoints ]; then \
	  cp -r $(SMC_ROOT)/entrypoints/. $(SMC_CONTEXT)/project/entrypoints/; fi
	find $(SMC_CONTEXT)/project -name __pycache__ -prune -exec rm -rf {} +
	$(SMC_PIP) install -q --no-deps --target $(SMC_CONTEXT)/project/site \
	  $(SMC_WHEELS)/sm_toolkit-*.whl
	rm -rf $(SMC_CONTEXT)/project/site/bin

push:
	@set -e; account="$(AWS_ACCOUNT_ID)"; \
	if [ -z "$$account" ]; then \
	  if [ -n "$(SMC_RUN)" ]; then account='<aws-account-id>'; \
	  else account=$$(aws sts get-caller-identity --query Account --output text); fi; \
	fi; \
	registry="$$account.dkr.ecr.$(AWS_REGION).amazonaws.com"; \
	remote="$$registry/$(ECR_REPO):$(IMAGE_TAG)"; \
	run() { if [ -n "$(SMC_RUN)" ]; then echo "$$*"; else sh -c "$$*"; fi; }; \
	run "aws ecr describe-repositories --region $(AWS_REGION) --repository-names $(ECR_REPO) >/dev/null 2>&1 || aws ecr create-repository --region $(AWS_REGION) --repository-name $(ECR_REPO) >/dev/null"; \
	run "aws ecr get-login-password --region $(AWS_REGION) | $(DOCKER) login --username AWS --password-stdin $$registry"; \
	run "$(DOCKER) tag $(IMAGE) $$remote"; \
	run "$(DOCKER) push $$remote"

local:
	cd $(SMC_ROOT) && SM_TOOLKIT_IMAGE=$(IMAGE) $(SMC_PYTHON) -m pytest -m container tests/container
