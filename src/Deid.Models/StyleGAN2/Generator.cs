using Deid.Models.Encoders;
using Deid.Models.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deid.Models.StyleGAN2;

/// <summary>Per-call generator options, mirroring the keyword arguments of rosinality's <c>Generator.forward</c>.</summary>
public sealed record GenerateOptions
{
    /// <summary>The inputs are W (or W+) codes, not z.</summary>
    public bool InputIsLatent { get; init; }
    /// <summary>ψ: 1 disables truncation; smaller values pull every style toward <see cref="TruncationLatent"/>.</summary>
    public double Truncation { get; init; } = 1;
    /// <summary>The centre for truncation ([1,D] or [D]); required when <see cref="Truncation"/> &lt; 1.</summary>
    public Tensor? TruncationLatent { get; init; }
    /// <summary>With two styles: rows [0, InjectIndex) of W+ come from the first, the rest from the second (random when null).</summary>
    public int? InjectIndex { get; init; }
    /// <summary>Fresh Gaussian noise per call instead of the stored <c>noises.noise_i</c> buffers (non-deterministic).</summary>
    public bool RandomizeNoise { get; init; }
    /// <summary>Explicit noise per layer (NumLayers tensors [B or 1,1,H,W]); overrides <see cref="RandomizeNoise"/>.</summary>
    public IReadOnlyList<Tensor>? Noise { get; init; }
}

/// <summary>
/// StyleGAN2 generator with exactly the parameter and buffer names of rosinality's <c>Generator</c>
/// (<c>style.*</c>, <c>input.input</c>, <c>conv1.*</c>, <c>to_rgb1.*</c>, <c>convs.*</c>, <c>to_rgbs.*</c>,
/// <c>noises.noise_i</c>), so published checkpoints load strictly. <c>forward(z)</c> draws images from z with
/// the stored noise; <see cref="Generate"/> exposes W/W+ input, truncation and style mixing.
/// </summary>
public sealed class Generator : nn.Module<Tensor, Tensor>, IGenerator
{
    private readonly Sequential style;
    private readonly ConstantInput input;
    private readonly StyledConv conv1;
    private readonly ToRGB to_rgb1;
    private readonly ModuleList<StyledConv> convs;
    private readonly ModuleList<ToRGB> to_rgbs;
    private readonly NoiseBuffers noises;
    // Not a Tensor field: RegisterComponents (and .to()) would turn it into a buffer and a state-dict key.
    private readonly Dictionary<(int N, long Seed, DeviceType Dev, int Index), Tensor> _meanLatents = new();
    private readonly List<Tensor> _latentAvg = new();

    /// <summary>The mean w [1,D] shipped with the checkpoint (rosinality's <c>latent_avg</c>), if the weight file had one (CPU).</summary>
    public Tensor? LatentAvg => _latentAvg.Count > 0 ? _latentAvg[0] : null;

    public StyleGAN2Config Config { get; }
    public int StyleDim => Config.StyleDim;
    public int NLatent => Config.NLatent;
    public int NumLayers => Config.NumLayers;
    public int Size => Config.Size;

    public Generator(StyleGAN2Config? config = null) : base("Generator")
    {
        Config = config ?? StyleGAN2Config.Ffhq256;
        Config.Validate();
        var c = Config;
        var mlp = new List<(string, nn.Module<Tensor, Tensor>)> { ("0", new PixelNorm()) };
        for (int i = 0; i < c.NMlp; i++)
            mlp.Add(((i + 1).ToString(), new EqualLinear(c.StyleDim, c.StyleDim, lrMul: c.LrMlp, activation: true)));
        style = nn.Sequential(mlp.ToArray());
        input = new ConstantInput(c.ChannelsAt(4));
        conv1 = new StyledConv(c.ChannelsAt(4), c.ChannelsAt(4), 3, c.StyleDim, blurKernel: c.BlurKernel);
        to_rgb1 = new ToRGB(c.ChannelsAt(4), c.StyleDim, upsample: false, blurKernel: c.BlurKernel);
        convs = new ModuleList<StyledConv>();
        to_rgbs = new ModuleList<ToRGB>();
        noises = new NoiseBuffers(c.NumLayers);
        int inCh = c.ChannelsAt(4);
        for (int i = 3; i <= c.LogSize; i++)
        {
            int outCh = c.ChannelsAt(1 << i);
            convs.Add(new StyledConv(inCh, outCh, 3, c.StyleDim, upsample: true, blurKernel: c.BlurKernel));
            convs.Add(new StyledConv(outCh, outCh, 3, c.StyleDim, blurKernel: c.BlurKernel));
            to_rgbs.Add(new ToRGB(outCh, c.StyleDim, blurKernel: c.BlurKernel));
            inCh = outCh;
        }
        RegisterComponents();
    }

    /// <summary>Builds the network described by a safetensors file's <c>config</c> metadata and loads it strictly.</summary>
    public static Generator FromSafeTensors(string path, string prefix = "")
    {
        StyleGAN2Config cfg;
        using (var f = SafeTensorsFile.Open(path))
        {
            if (!f.Metadata.TryGetValue("config", out var json))
                throw new WeightsException($"{path} has no StyleGAN2 config in its metadata (import it with `deid models import`)");
            cfg = StyleGAN2Config.FromJson(json);
        }
        var g = new Generator(cfg);
        var tensors = StateDict.FromSafeTensors(path, prefix);
        try
        {
            // Imported checkpoints carry the published mean w beside the weights; it is not a module tensor.
            if (tensors.Remove("latent_avg", out var avg))
                g._latentAvg.Add(avg.reshape(1, cfg.StyleDim).clone());
            StateDict.LoadStrict(g, tensors);
            if (avg is not null) avg.Dispose();
        }
        catch { g.Dispose(); throw; }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
        g.eval();
        return g;
    }

    /// <summary>PyTorch's key order (own parameters, own buffers, then children), so our key lists match checkpoints'.</summary>
    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null) =>
        PyTorchOrder.StateDict(this, destination, prefix);

    /// <summary>The mapping network: z [B,D] → w [B,D].</summary>
    public Tensor Map(Tensor z) => style.forward(z);

    /// <summary>Images [B,3,Size,Size] from z [B,D] with the stored noise (deterministic).</summary>
    public override Tensor forward(Tensor z) => Generate([z]).Image;

    /// <summary>Images from W codes [B,D] (every layer gets the same w) with the stored noise.</summary>
    public Tensor Synthesize(Tensor w) => Generate([w], new GenerateOptions { InputIsLatent = true }).Image;

    /// <summary>Images from W+ codes [B,NLatent,D] with the stored noise.</summary>
    public Tensor SynthesizeWPlus(Tensor wplus) => Generate([wplus], new GenerateOptions { InputIsLatent = true }).Image;

    /// <summary>
    /// rosinality's <c>forward</c>: one or two styles (z, w [B,D] or W+ [B,NLatent,D]) → (image, the W+ used).
    /// </summary>
    public (Tensor Image, Tensor Latent) Generate(IReadOnlyList<Tensor> styles, GenerateOptions? options = null)
    {
        options ??= new GenerateOptions();
        if (styles.Count is < 1 or > 2) throw new ArgumentException($"StyleGAN2 takes one or two styles, got {styles.Count}");
        using var scope = NewDisposeScope();
        foreach (var s in styles)
        {
            bool ok = s.dim() == 2 ? s.shape[1] == StyleDim
                : s.dim() == 3 && options.InputIsLatent && s.shape[1] == NLatent && s.shape[2] == StyleDim;
            if (!ok)
                throw new ArgumentException($"StyleGAN2 {(options.InputIsLatent ? "latent" : "z")} has shape [{string.Join(",", s.shape)}]; expected [B,{StyleDim}]"
                                            + (options.InputIsLatent ? $" or [B,{NLatent},{StyleDim}]" : ""));
        }
        var ss = styles.Select(s => options.InputIsLatent ? s : Map(s)).ToList();

        if (options.Truncation < 1)
        {
            var t = options.TruncationLatent
                    ?? throw new ArgumentException("truncation < 1 needs a truncation latent (e.g. MeanLatent())");
            ss = ss.Select(s => t + options.Truncation * (s - t)).ToList();
        }

        Tensor latent;
        if (ss.Count == 1)
            latent = ss[0].dim() < 3 ? ss[0].unsqueeze(1).repeat(1, NLatent, 1) : ss[0].alias();
        else
        {
            int inject = options.InjectIndex ?? Random.Shared.Next(1, NLatent);
            if (inject < 0 || inject > NLatent) throw new ArgumentException($"inject index must be in 0..{NLatent}, got {inject}");
            if (ss.Any(s => s.dim() != 2)) throw new ArgumentException("style mixing takes two [B,D] styles");
            latent = cat([ss[0].unsqueeze(1).repeat(1, inject, 1), ss[1].unsqueeze(1).repeat(1, NLatent - inject, 1)], 1);
        }

        var noise = NoiseFor(options);
        // Each activation is freed as soon as the next exists, so peak memory stays near two layers' worth.
        var x = input.forward(latent);
        x = Replace(x, conv1.forward(x, latent.select(1, 0), noise[0]));
        var skip = to_rgb1.forward(x, latent.select(1, 1), null);
        for (int r = 0, i = 1; r < to_rgbs.Count; r++, i += 2)
        {
            x = Replace(x, convs[2 * r].forward(x, latent.select(1, i), noise[2 * r + 1]));
            x = Replace(x, convs[2 * r + 1].forward(x, latent.select(1, i + 1), noise[2 * r + 2]));
            skip = Replace(skip, to_rgbs[r].forward(x, latent.select(1, i + 2), skip));
        }
        x.Dispose();
        return (skip.MoveToOuterDisposeScope(), latent.MoveToOuterDisposeScope());
    }

    private static Tensor Replace(Tensor old, Tensor next)
    {
        old.Dispose();
        return next;
    }

    private Tensor?[] NoiseFor(GenerateOptions options)
    {
        if (options.Noise is { } given)
        {
            if (given.Count != NumLayers) throw new ArgumentException($"StyleGAN2 needs {NumLayers} noise tensors, got {given.Count}");
            return given.ToArray();
        }
        if (options.RandomizeNoise) return new Tensor?[NumLayers];
        return Enumerable.Range(0, NumLayers).Select(i => (Tensor?)noises.Get(i)).ToArray();
    }

    /// <summary>
    /// The mean w of <paramref name="n"/> mapped z samples (seeded, so stable across runs), cached per (n, seed, device);
    /// the centre for truncation. Returns [1,D]; the cache owns it (do not dispose).
    /// </summary>
    public Tensor MeanLatent(int n = 4096, long seed = 0)
    {
        var dev = input.parameters().First().device;
        var key = (n, seed, dev.type, dev.index);
        if (_meanLatents.TryGetValue(key, out var cached) && !cached.IsInvalid) return cached;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var gen = new torch.Generator((ulong)seed);
        var z = randn([n, StyleDim], generator: gen).to(dev);
        var mean = Map(z).mean([0], keepdim: true).MoveToOuterDisposeScope();
        _meanLatents[key] = mean;
        return mean;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in _meanLatents.Values) t.Dispose();
            foreach (var t in _latentAvg) t.Dispose();
            _meanLatents.Clear();
        }
        base.Dispose(disposing);
    }

    /// <summary>rosinality's <c>noises</c>: one fixed N(0,1) map per layer, <c>noise_i</c> of size 2^((i+5)/2).</summary>
    private sealed class NoiseBuffers : nn.Module
    {
        public NoiseBuffers(int numLayers) : base("noises")
        {
            for (int i = 0; i < numLayers; i++)
            {
                long res = 1L << ((i + 5) / 2);
                register_buffer($"noise_{i}", randn(1, 1, res, res));
            }
        }

        public Tensor Get(int i) => get_buffer($"noise_{i}")!;
    }
}
