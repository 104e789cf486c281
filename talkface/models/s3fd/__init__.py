"""S3FD face detector (syncnet_python's `detectors/s3fd`, weights `sfd_face.pth`).

Importing this package also lets `talkface.faces.get_face_backend("s3fd")` load the network by itself
(`talkface.faces.backends.set_s3fd_loader`): the faces layer sits below the models and cannot import them.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from ...faces.backends import set_s3fd_loader
from .configuration_s3fd import S3FDConfig
from .feature_extraction_s3fd import S3FDFeatureExtractor
from .modeling_s3fd import S3FDDetector, S3FDModel, S3FDOutput, S3FDPreTrainedModel

AutoConfig.register(S3FDConfig.model_type, S3FDConfig, exist_ok=True)
AutoModel.register(S3FDConfig, S3FDModel, exist_ok=True)
AutoFeatureExtractor.register(S3FDConfig, S3FDFeatureExtractor, exist_ok=True)
set_s3fd_loader(S3FDDetector.from_pretrained)

__all__ = ["S3FDConfig", "S3FDDetector", "S3FDFeatureExtractor", "S3FDModel", "S3FDOutput", "S3FDPreTrainedModel"]
