"""Configuration schemas.  Every field has a default, a unit (in brackets) and a description.

Unknown keys are rejected (``extra="forbid"``); :mod:`cryodyna.config.load` adds the closest valid
key to the message.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base of all config sections: strict keys, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImageDataConfig(Section):
    datadir: str | None = Field(None, description="Folder with the image stacks when paths in the particle file do not resolve")
    apix: float | None = Field(None, gt=0, description="[Å/px] Pixel size of the stored images when the particle file lacks it")
    box: int | None = Field(None, gt=0, description="[px] Downsample images to this side by Fourier cropping (default: 128 if larger, else unchanged)")
    mask_radius: float = Field(1.0, gt=0, le=1.5, description="[fraction of D/2] Circular mask applied to input images")
    invert_contrast: bool = Field(False, description="Multiply images by -1 (use when protein is dark in the images)")
    cache_images: bool = Field(True, description="Keep the downsampled images in RUN/cache/images.npy on disk, read batch by batch (datasets larger than RAM; fast resume), instead of in memory")


class DataConfig(ImageDataConfig):
    loss_mask_radius: float = Field(0.9375, gt=0, le=1.5, description="[fraction of D/2] Circular mask inside which the image loss is computed")
    lowpass: float | None = Field(None, gt=0, description="[Å] Low-pass resolution for data and prediction (default: 2.5 x the downsampled pixel size)")
    lowpass_soft_width: float = Field(2.0, ge=0, description="[Fourier px] Raised-cosine fall-off above the low-pass cut-off (0 = hard edge)")


class DensityDataConfig(ImageDataConfig):
    box: int | None = Field(None, gt=0, description="[px] Downsample images to this side by Fourier cropping (default: 256 if larger, else unchanged)")
    fourier_radius: float = Field(1.0, gt=0, le=1, description="[fraction of Nyquist] Frequencies inside this radius enter the loss and the volumes")


class DeformationModelConfig(Section):
    z_dim: int = Field(16, ge=1, description="Size of the per-particle latent code")
    latent_dim: int = Field(32, ge=4, description="Feature width of nodes and blocks inside the decoder")
    displacement_scale: float = Field(10.0, gt=0, description="[Å] Displacement of one unit of the decoder's output layer, the length unit of its geometric inputs (1 Å shrank motions at low SNR)")
    encoder: Literal["mlp", "cross-attention"] = Field("cross-attention", description="Image encoder: plain MLP or MLP with attention across the images of a batch")
    encoder_hidden: list[int] = Field([512, 256, 128], description="Hidden widths of the encoder MLP")
    encoder_input: Literal["image", "residual", "gradient"] = Field("image", description="What the encoder sees: the image; its residual after the reference model's prediction in its pose and CTF (least-squares scaled); or the gradient: where the image pulls each node of the reference (minus the gradient of its image loss at the reference, in the map frame, the same for any pose; 3 numbers per node). The gradient learnt the motion of an 815-residue, five-chain benchmark complex in 10 epochs at two seeds (the image did not) and did better on a 2-D AdK landscape, but worse on AdK paths, most at low SNR where it fits the noise; the residual learnt the complex at one of two seeds; see README, Benchmarks")
    attention_layers: int = Field(1, ge=0, description="Cross-view attention layers (cross-attention encoder)")
    attention_heads: int = Field(4, ge=1, description="Heads per attention layer")
    context_dropout: float = Field(0.5, ge=0, le=1, description="Probability that a training step encodes each image alone (no cross-view attention), so single particles can be encoded too")
    latent_noise: float = Field(0.0, ge=0, description="[fraction of the batch's latent spread] Gaussian noise added to the latents the decoder sees in training (a smoothness bottleneck; 0 = off)")
    knn: int = Field(16, ge=1, description="Neighbours per block in the block graph")
    min_block_length: int = Field(3, ge=1, description="[residues] Shorter secondary-structure runs merge into the previous block of the same chain")
    reference_init: bool = Field(False, description="Instead of a zero-initialised output layer, start from a random one and first train the model to output the reference (the reference method's init stage)")


class BeadModelConfig(DeformationModelConfig):
    gaussian_sigma: float = Field(1.75, gt=0, description="[Å] Width of every bead Gaussian. All-atom images of AdK (1.6 Å/px, 6 Å low-pass) are fitted 3x better by beads of 1.75 Å than of half their Lennard-Jones size (2.05-2.35 Å for regular and small beads, the earlier default), and train-cg learnt two AdK motions 4-6 % more accurately with it; 1.5 Å fits still better but trapped one of two runs in a wrong LID placement (README, Benchmarks)")
    bead_features: int = Field(8, ge=0, description="Learned features of each bead's own, next to its residue's, in the decoder head: side-chain beads move in their own way with the latent (0 = rigidly with their residue's features)")


class ModelConfig(DeformationModelConfig):
    gaussian_sigma: float = Field(2.0, gt=0, description="[Å] Width of each residue Gaussian")


class ElasticLossConfig(Section):
    image_weight: float = Field(10.0, ge=0, description="Weight of the image loss (1 - correlation, dimensionless) relative to the priors (Å^2)")
    legacy_correlation: bool = Field(False, description="Use the reference method's approximate correlation instead of the exact masked Pearson")
    elastic_weight: float = Field(1.0, ge=0, description="Weight of the elastic-network distance loss")
    intra_chain_cutoff: float = Field(12.0, ge=0, description="[Å] Elastic-network cut-off within a protein chain")
    inter_chain_cutoff: float = Field(0.0, ge=0, description="[Å] Elastic-network cut-off between chains (0 = none)")
    nucleic_cutoff: float = Field(15.0, ge=0, description="[Å] Elastic-network cut-off between nucleotides")
    elastic_keep_ratio: float = Field(0.8, gt=0, le=1, description="Fraction of elastic pairs kept per chain (pairs with the most variable error are released)")


class LossConfig(ElasticLossConfig):
    priors: list[str] = Field(["connect", "elastic", "clash"], description="Prior energies of the loss, by name (each with its own weight)")
    connect_weight: float = Field(1.0, ge=0, description="Weight of the consecutive-node distance loss")
    clash_weight: float = Field(1.0, ge=0, description="Weight of the clash loss")
    clash_distance: float = Field(4.0, gt=0, description="[Å] Node pairs closer than this are penalised")


class BeadLossConfig(ElasticLossConfig):
    priors: list[str] = Field(["elastic", "protein_nucleic", "martini"], description="Prior energies of the loss, by name (martini: the force field's bonded and non-bonded terms)")
    elastic_scope: Literal["backbone", "all"] = Field("backbone", description="Elastic network between backbone beads only (side chains held by the MARTINI bonded terms) or between all beads")
    bond_weight: float = Field(0.1, ge=0, description="Weight of the MARTINI bond and constraint energy (mean per bond, in kT at 300 K); the MARTINI weights of 1 held the motion back (adk_bead.py: 1.45 vs 0.98 Å at SNR 0.05, 2.08 vs 1.44 Å at 0.01, with 0.1)")
    angle_weight: float = Field(0.1, ge=0, description="Weight of the MARTINI angle energy (mean per angle, kT)")
    dihedral_weight: float = Field(0.1, ge=0, description="Weight of the MARTINI proper-dihedral energy (mean per dihedral term, kT)")
    improper_weight: float = Field(0.1, ge=0, description="Weight of the MARTINI improper-dihedral energy (mean per improper, kT)")
    nonbonded_weight: float = Field(0.1, ge=0, description="Weight of the MARTINI non-bonded energy (kT, summed over pairs and divided by the reference's neighbour-pair count)")
    protein_nucleic_cutoff: float = Field(12.0, ge=0, description="[Å] Protein-nucleotide bead pairs within this distance are restrained to their reference distances (the reference method's dist_aa_nt; 0 = none)")
    protein_nucleic_weight: float = Field(1.0, ge=0, description="Weight of the protein-nucleotide distance restraint (mean squared deviation, Å^2)")
    neighbour_skin: float = Field(3.0, ge=0, description="[Å] Margin of the non-bonded neighbour list beyond the cut-off (the list is exact while no bead moves more than half of it between refreshes)")
    neighbour_every: int = Field(10, ge=1, description="[steps] Rebuild the non-bonded neighbour list this often (halved automatically when a check finds missed pairs)")
    protein_nucleic_keep_ratio: float = Field(0.99, gt=0, le=1, description="Fraction of protein-nucleotide pairs kept (those whose error varies most across the batch are released)")


class MartiniConfig(Section):
    force_field: Literal["martini3001", "martini22"] = Field("martini3001", description="MARTINI force field of martinize2: Martini 3 or Martini 2.2 (the reference method's)")
    nonbonded: Literal["wca", "lj", "morse"] = Field("wca", description="Non-bonded form: repulsive WCA, full Lennard-Jones, or Morse with the LJ minimum (both potential-shifted at 11 Å)")
    lj_table: bool = Field(True, description="Martini 3 non-bonded parameters from its Lennard-Jones table (pip install --no-deps martini-shaker; an error when absent); false: a size-based WCA repulsion for every pair (Martini 2.2 always runs with it)")
    minimize: bool = Field(True, description="Minimise the mapped reference in its force field (L-BFGS, restrained to the map frame) before training")
    minimize_steps: int = Field(500, ge=1, description="[iterations] L-BFGS iterations of the minimisation")
    restraint_k: float = Field(10.0, ge=0, description="[kJ mol^-1 Å^-2] Harmonic restraint of the minimisation to the mapped positions (of the side-chain beads, and of the backbone beads when martini.backbone_restraint_k is null; 10 keeps them within ~0.5-0.6 Å RMS)")
    backbone_restraint_k: float | None = Field(1000.0, ge=0, description="[kJ mol^-1 Å^-2] Restraint of the backbone beads (BB; BB3 of nucleotides; the first bead of other residues) in the minimisation (null: martini.restraint_k); 1000 keeps them within ~0.1 Å of the mapped positions while the side-chain beads relax")


class OptimConfig(Section):
    epochs: int = Field(20, ge=1, description="Training epochs")
    batch_size: int = Field(16, ge=1, description="Particles per step (per process); 16 learns per-particle conformations better than 64 at equal epochs (see benchmarks/accuracy.py)")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(100, ge=0, description="[steps] Linear learning-rate warm-up")
    cosine_schedule: bool = Field(False, description="Decay the learning rate with a half cosine over training, from lr to lr x lr_final_fraction")
    lr_final_fraction: float = Field(0.0, ge=0, le=1, description="Learning rate at the end of the cosine decay, as a fraction of lr")
    lr_drop_epochs: int = Field(0, ge=0, description="[epochs] Train the last this many epochs at optim.lr_drop_factor x the learning rate (a step decay on top of the schedule above; 0 = off). train-atom, last of 10 epochs at 0.3x: 6 % lower CA RMSD on a low-SNR (0.01) benchmark, 2 % on another, but 2.3-2.5 % higher on a 2-D landscape at two seeds; see README, Benchmarks")
    lr_drop_factor: float = Field(0.3, gt=0, le=1, description="Learning-rate factor of the last optim.lr_drop_epochs epochs")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this value")
    spike_factor: float = Field(0.0, ge=0, description="Cap each step's gradient norm at this many times the median of the last 200 steps' (0 = off; train-cg: 10); the metrics count the capped steps. train-atom has not shown the spikes it guards against, and with 10 it was mixed on the benchmark sets (README, Benchmarks)")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Autocast precision of the networks (projection and FFT stay fp32)")
    holdout_fraction: float = Field(0.05, ge=0, lt=1, description="Fraction of particles held out; their image loss is reported")
    eval_every: int = Field(1, ge=1, description="[epochs] Evaluate (z, structures, plots, checkpoint) every this many epochs")
    eval_every_minutes: float = Field(0.0, ge=0, description="[minutes] Also evaluate within an epoch once this much time has passed since the last evaluation (0 = at epoch ends only; for data sets whose epochs take hours)")
    eval_every_steps: int = Field(0, ge=0, description="[steps] Also evaluate within an epoch at every multiple of this step count (0 = at epoch ends only)")
    checkpoint_every: int = Field(500, ge=1, description="[steps] Write checkpoints/last.pt this often")
    keep_checkpoints: Annotated[int, Field(ge=1)] | Literal["all"] = Field(2, description="Evaluation folders that keep their ckpt.pt: the newest N plus the one with the best held-out loss, or all")
    max_bad_steps: int = Field(20, ge=1, description="[steps] Stop with an error after this many consecutive steps with a non-finite loss or gradient (each is skipped)")
    seed: int = Field(1, description="Random seed (on CPU, train-atom runs with the same seed, data and settings give identical latents when optim.threads fixes the thread count; the automatic count follows the machine's load)")
    device: str = Field("auto", description="Torch device: auto, cpu, cuda, cuda:N")
    threads: int = Field(0, ge=0, description="CPU threads of each process (0 = automatic: one per free core at start, shared among the processes of a node, re-checked by timing steps every 30 s)")
    loader_workers: int = Field(0, ge=0, description="Background processes reading batches from the image cache (useful when it is larger than the page cache); on a GPU batches are pinned and copied without blocking either way")
    images_on_device: bool | None = Field(None, description="Hold all downsampled images in GPU memory (default: when they take under 30 % of the free GPU memory)")
    compile: bool = Field(False, description="torch.compile the training step's loss whole (networks, image model, priors; fullgraph, static shapes; train-density: the network): faster steps on GPU after a slower start, needs a C++ compiler on CPU")
    compile_backend: str = Field("inductor", description="torch.compile backend (inductor; aot_eager needs no compiler)")
    refine_poses: bool = Field(False, description="Estimate a per-particle rotation and shift correction of the given poses from each image, shrunk by how far the images support it (written as particles_refined.star with each evaluation)")
    pose_warmup_epochs: int = Field(4, ge=0, description="[epochs] Train with the given poses this long before refining them (the decoded conformations settle first, so that the poses do not absorb what they still miss)")
    pose_prior_deg: float = Field(3.0, gt=0, description="[degrees] Largest spread of the rotation errors of the given poses (the spread itself is estimated from the images) and largest rotation step per visit")
    pose_prior_a: float = Field(1.0, gt=0, description="[Å] Largest spread of the shift errors of the given poses (estimated from the images) and largest shift step per visit")


class AnalysisConfig(Section):
    kmeans: int = Field(10, ge=1, description="Number of k-means clusters whose centres are decoded")
    pcs: int = Field(3, ge=0, description="Number of principal components to traverse")
    pc_frames: int = Field(10, ge=2, description="Frames per principal-component trajectory")
    umap: bool = Field(True, description="Also embed z with UMAP when umap-learn is installed")


class VolumeModelConfig(Section):
    hidden: int = Field(1024, ge=8, description="Width of the volume MLP")
    layers: int = Field(3, ge=0, description="Residual hidden layers of the volume MLP")
    pe_features: int | None = Field(None, ge=1, description="Random Fourier features of the frequency coordinates (default: 3 x D/2)")
    pe_sigma: float = Field(0.5, gt=0, description="Standard deviation of the random feature frequencies (cryoDRGN's feat_sigma)")


class DeformationOptimConfig(OptimConfig):
    train_particles: int = Field(0, ge=0, description="Train on this many particles drawn at random (seeded) instead of all (0 = all); every particle still gets a latent, at the last evaluation its posterior mean over the trained particles' latents: more epochs in the same time. On an 815-residue complex, 3,000 of 6,000 particles for 20 epochs learnt the motion that all for 10 epochs did not (0.97 against 2.35 / 2.45 Å at two seeds, about the same time); on the AdK benchmark sets it was mixed (up to 1.5x worse at SNR 0.01, where the encoder over-fits the trained half); see README, Benchmarks")
    lowpass_start_factor: float | None = Field(None, gt=1, description="Coarse to fine: start the image loss at this multiple of the training low-pass (data.lowpass; 2 = twice as coarse) and sharpen it, linearly in spatial frequency, to the training low-pass over the first optim.lowpass_ramp_epochs epochs (null = the training low-pass throughout; the held-out losses of evaluations within the ramp are at its coarser low-pass). train-atom from 2 x 6 Å over 3 of 10 epochs: 0-11 % lower CA RMSD on low-SNR (0.01) benchmark paths, level on them at SNR 0.05, 6 % higher on another protein's path and 3-11 % on a 2-D landscape; see README, Benchmarks")
    lowpass_ramp_epochs: float = Field(3.0, gt=0, description="[epochs] Length of the optim.lowpass_start_factor ramp")
    posterior_candidates: int = Field(32, ge=0, description="At the final evaluation, replace each particle's latent by its posterior mean over its own and this many other particles' latents, each scored against its image with the decoder fixed (0 = the encoder's latents)")


class BeadOptimConfig(DeformationOptimConfig):
    spike_factor: float = Field(10.0, ge=0, description="Cap each step's gradient norm at this many times the median of the last 200 steps' (0 = off): a batch with overlapping MARTINI beads (their repulsion grows as r^-12) otherwise throws a run off the motion it has learnt, for good; the metrics count the capped steps")


class DensityOptimConfig(OptimConfig):
    epochs: int = Field(20, ge=1, description="Training epochs")
    batch_size: int = Field(8, ge=1, description="Particles per step (per process)")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    eval_every: int = Field(5, ge=1, description="[epochs] Write volumes and a checkpoint every this many epochs")


class TrainDensityConfig(Section):
    """Density generator (``cryodyna train-density``)."""

    data: DensityDataConfig = DensityDataConfig()
    model: VolumeModelConfig = VolumeModelConfig()
    optim: DensityOptimConfig = DensityOptimConfig()
    analysis: AnalysisConfig = AnalysisConfig()


class TrainCGConfig(Section):
    """Bead-level (MARTINI) training (``cryodyna train-cg``)."""

    data: DataConfig = DataConfig()
    model: BeadModelConfig = BeadModelConfig()
    martini: MartiniConfig = MartiniConfig()
    loss: BeadLossConfig = BeadLossConfig()
    optim: BeadOptimConfig = BeadOptimConfig()
    analysis: AnalysisConfig = AnalysisConfig()


class TrainAtomConfig(Section):
    """Residue-level training (``cryodyna train-atom``)."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: DeformationOptimConfig = DeformationOptimConfig()
    analysis: AnalysisConfig = AnalysisConfig()
