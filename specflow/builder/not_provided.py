"""Types that zetta_utils specs name and specflow deliberately does not provide.

A spec naming one is refused with a :class:`NotProvidedError` that says so (and why), instead
of "unknown @type": model training, alignment, model inference, cloud (GCP, Kubernetes)
execution and meshing are outside what specflow does, and some types older specs name have
been retired from zetta_utils itself.
"""

from __future__ import annotations

from specflow.spec.errors import SpecError, join_path


class NotProvidedError(SpecError):
    """A spec names a type specflow knows of but does not provide."""

    type_name: str = ""
    reason: str = ""

    @classmethod
    def of(cls, type_name: str, reason: str, *, path: str | None = None) -> NotProvidedError:
        err = cls(f"`{type_name}` is not provided by specflow ({reason})", path=path)
        err.type_name, err.reason = type_name, reason
        return err

    def with_path_prefix(self, prefix: str) -> SpecError:
        if not prefix:
            return self
        return NotProvidedError.of(self.type_name, self.reason,
                                   path=join_path(prefix, self.path))


TRAINING = "model training"
INFERENCE = "neural networks and model inference"
ALIGNMENT = "alignment"
CLOUD = "GCP and Kubernetes execution"
MESHING = "meshing and skeletonization"
RETIRED = "retired from zetta_utils, whose build_subchunkable_apply_flow does their work"

_GROUPS: dict[str, tuple[str, ...]] = {
    TRAINING: (
        "lightning_train", "ZettaDefaultTrainer", "LayerDataset", "JointDataset",
        "TorchDataLoader", "TorchRandomSampler", "SamplerWrapper", "RandomIndexer",
        "VolumetricStridedIndexer", "VolumetricNGLIndexer", "LoopIndexer", "uniform_distr",
        "square_tile_pattern_aug", "gamma_contrast_aug", "rescale_max_magnitude_aug",
        "clamp_values_aug", "SimpleAugment", "BinaryLossWithInverseMargin",
        "BinaryClassBalancer", "BaseEncoderRegime", "EncodingCoarsenerRegime",
        "EncodingCoarsenerGenX1Regime", "NaiveSupervisedRegime", "NaiveSupervised",
        "MisalignmentDetectorAcedRegime", "BaseAffinityRegime", "NoOpRegime",
        "ROIMaskProcessor", "InvertProcessor", "build_layer_set", "build_volumetric_layer_set",
    ),
    INFERENCE: (
        "torch.nn.Sequential", "torch.nn.Tanh", "torch.nn.Upsample", "torch.nn.AvgPool2d",
        "torch.nn.AvgPool3d", "torch.nn.MaxPool2d", "torch.nn.MaxPool3d", "torch.nn.Conv2d",
        "torch.nn.Conv3d", "torch.nn.ConvTranspose2d", "torch.nn.Sigmoid", "torch.nn.ReLU",
        "torch.nn.InstanceNorm3d", "torch.nn.BatchNorm2d", "torch.nn.BCEWithLogitsLoss",
        "torch.sub", "torch.arange", "ConvBlock", "UNet", "UpConv", "MultiHeadedOutput",
        "BaseEncoder", "BaseCoarsener", "EncodingCoarsener", "EncodingCoarsenerGenX1",
        "EncodingCoarsenerHighRes", "apply_base_encoder", "load_weights_file",
        "MisalignmentDetector", "naive_misd", "run_affinities_inference", "AffinitiesInferencer",
        "SimpleInferenceRunner", "AffinityProcessor", "ReworkAffinitiesOp", "AdjustAffinitiesOp",
        "vec_to_affs_v1", "parse_artificery", "Crop",
    ),
    ALIGNMENT: (
        "ComputeFieldStage", "build_compute_field_multistage_flow",
        "align_with_online_finetuner", "align_with_online_finetunner", "WarpOperation",
        "build_warp_flow", "invert_field", "gen_biased_perlin_noise_field",
        "rand_perlin_2d_octaves", "AcedMatchOffsetOp", "AcedRelaxationOp",
        "build_aced_relaxation_flow", "build_get_match_offsets_flow",
        "build_get_match_offsets_naive_flow", "get_rigidity_map", "ComposeWithErrorsOperation",
        "compute_alignment_quality", "elastic_tile_placement", "match_tiles",
        "estimate_lens_distortion_from_registry", "ingest_from_registry",
    ),
    CLOUD: (
        "mazepa.SQSExecutionQueue", "mazepa.k8s.configure_cronjob", "mazepa.k8s.ClusterInfo",
        "mazepa.k8s.CronJobSpec", "gcloud.create_mig_from_template",
        "gcloud.create_instance_template", "gcloud.AcceleratorConfig", "test_gcs_access",
        "build_datastore_layer",
    ),
    RETIRED: (
        "build_write_flow", "build_apply_mask_flow", "build_blendable_apply_flow",
        "build_annotated_section_copy_flow", "detect_consecutive_masks",
        "VolumetricIndexChunker", "chain", "pad_bbox", "split_reduce",
    ),
    MESHING: (
        "MakeMeshFragsOperation", "build_generate_meshes_flow", "build_generate_skeletons_flow",
        "build_make_shards_flow",
    ),
}

#: every type specflow does not provide, with the reason
NOT_PROVIDED: dict[str, str] = {name: reason for reason, names in _GROUPS.items()
                                for name in names}


def not_provided(name: str, *, path: str | None = None) -> NotProvidedError | None:
    """The error for ``name`` when specflow does not provide it, else ``None``."""
    reason = NOT_PROVIDED.get(name)
    return None if reason is None else NotProvidedError.of(name, reason, path=path)
