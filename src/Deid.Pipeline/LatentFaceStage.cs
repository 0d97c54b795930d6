using Deid.Faces;
using Deid.Models;
using OpenCvSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Pipeline;

/// <summary>A synthetic candidate that was turned down because it resembled a face of the clip.</summary>
public sealed record RejectedCandidate(long Seed, double MaxSimilarity);

/// <summary>How one track's identity was chosen: a photo, or a seed with the candidates rejected before it.</summary>
public sealed record TrackIdentity(int TrackId, string Kind, long? Seed, string? Photo, double? MaxSimilarityToClip,
    IReadOnlyList<RejectedCandidate> Rejected)
{
    /// <summary>Mean L2 step of the track's w from one frame to the next (after smoothing).</summary>
    public double? MeanWStep { get; init; }
}

/// <summary>An identity photo's face, found and aligned by the engine before any frame is decoded; the stage given it disposes the crop.</summary>
public sealed record IdentityPhoto(string Path, Mat AlignedCrop, Point2f[] CropLandmarks);

/// <summary>
/// Neural face replacement (Nitzan et al. 2020): each crop's attributes E_attr(crop), the track's fixed identity
/// code, w = M([id, attr]), smoothed per track over time, and G(w) is the new face. One identity per track for the
/// whole clip: a photo's E_id code, or a synthetic person drawn by G from a seed and checked by the independent
/// recognizer against the clip's own faces. Every call must come through the <see cref="DeviceExecutor"/>.
/// </summary>
public sealed class LatentFaceStage : IFaceStage
{
    private sealed class Identity(Tensor code, float[] embedding, TrackIdentity record) : IDisposable
    {
        public Tensor Code { get; } = code;
        public float[] Embedding { get; } = embedding;
        public TrackIdentity Record { get; } = record;
        public void Dispose() => Code.Dispose();
    }

    private readonly LatentNetworks _nets;
    private readonly OnnxFaceRecognizer _recognizer;
    private readonly LatentOptions _options;
    private readonly IReadOnlyList<float[]> _clipFaces;
    private readonly double _threshold;
    private readonly Action<string> _warn;
    private readonly Dictionary<string, IdentityPhoto> _photos;
    private readonly Dictionary<int, Identity> _tracks = [];
    private readonly Dictionary<int, WSmoother> _smoothers = [];
    private readonly Dictionary<int, (float[] Last, List<double> Steps)> _wSteps = [];
    private readonly Dictionary<string, (Tensor Code, float[] Embedding)> _photoCodes = [];
    private readonly long _baseSeed;
    private readonly string? _basePhoto;

    /// <param name="clipFaces">Recognizer embeddings of faces sampled from the clip (the pre-scan).</param>
    /// <param name="photos">Every photo the job names (<see cref="LatentOptions.Identity"/> and per-track pins), by path.</param>
    public LatentFaceStage(LatentNetworks nets, OnnxFaceRecognizer recognizer, LatentOptions options, int batchSize,
        IReadOnlyList<float[]> clipFaces, IReadOnlyDictionary<string, IdentityPhoto> photos, Action<string> warn,
        double threshold = OnnxFaceRecognizer.SamePersonThreshold)
    {
        _nets = nets;
        _recognizer = recognizer;
        _options = options;
        _clipFaces = clipFaces;
        _threshold = threshold;
        _warn = warn;
        _photos = new Dictionary<string, IdentityPhoto>(photos);
        BatchSize = Math.Max(1, batchSize);
        (_baseSeed, _basePhoto) = ParseIdentity(options.Identity);
    }

    public string Name => "latent";
    public int BatchSize { get; }
    public bool ReplacesIdentity => true;
    public IReadOnlyList<TrackIdentity> Identities => _tracks.Values
        .Select(t => t.Record with { MeanWStep = WSteps(t.Record.TrackId) is { Count: > 0 } s ? Math.Round(s.Average(), 6) : null })
        .OrderBy(r => r.TrackId).ToList();
    public float[]? TargetEmbedding(int trackId) => _tracks.TryGetValue(trackId, out var t) ? t.Embedding : null;

    /// <summary><c>seed:N</c> → (N, null); anything else is a photo path → (0, path).</summary>
    public static (long Seed, string? Photo) ParseIdentity(string spec)
    {
        if (spec.StartsWith("seed:", StringComparison.OrdinalIgnoreCase))
        {
            return long.TryParse(spec.AsSpan(5), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var s) && s >= 0
                ? (s, null)
                : throw new PipelineException($"'{spec}' is not a valid identity seed (expected seed:N with N a whole number ≥ 0)");
        }
        return (0, spec);
    }

    /// <summary>Candidate k of track t: the first candidate of track 1 is the seed itself, so seed:7 means the person seed 7 draws.</summary>
    public static long CandidateSeed(long baseSeed, int trackId, int k) => baseSeed + 10_007L * Math.Max(0, trackId - 1) + 1_000_003L * k;

    public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        foreach (var c in batch) IdentityOf(c);
        using var grad = no_grad();
        using var scope = NewDisposeScope();
        var model = _nets.Model;
        var x = MatTensors.FromCrops(batch.Select(c => c.Crop).ToList(), model.Device);
        var ids = cat(batch.Select(c => _tracks[c.TrackId].Code).ToArray(), 0);
        var w = model.MapAttributes(ids, x);
        if (_options.WSmoothing) w = Smooth(batch, w);
        RecordSteps(batch, w);
        ct.ThrowIfCancellationRequested();
        var images = _nets.Generator.Synthesize(w);
        return MatTensors.ToCrops(images);
    }

    /// <summary>
    /// The audit's second attempt: the identity code is pushed away from the source face's own E_id code,
    /// id' = normalize(id + k·(id − E_id(source))), and the face is drawn again (not smoothed: it replaces one frame).
    /// </summary>
    public IReadOnlyList<Mat> Reinforce(IReadOnlyList<FaceCrop> batch, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        using var grad = no_grad();
        using var scope = NewDisposeScope();
        var model = _nets.Model;
        var x = MatTensors.FromCrops(batch.Select(c => c.Crop).ToList(), model.Device);
        var source = model.EncodeIdentity(x);
        var ids = cat(batch.Select(c => IdentityOf(c).Code).ToArray(), 0);
        var pushed = ids + (ids - source) * _options.IdentityPush;
        pushed = pushed / pushed.norm(1, true, 2).clamp_min(1e-8) * ids.norm(1, true, 2);
        var w = model.Mapper.Map(pushed, model.EncodeAttributes(x));
        return MatTensors.ToCrops(_nets.Generator.Synthesize(w));
    }

    /// <summary>L2 distance between consecutive w of each track (after smoothing): how much the drawn face moves in W per frame.</summary>
    public IReadOnlyList<double> WSteps(int trackId) => _wSteps.TryGetValue(trackId, out var s) ? s.Steps : [];

    private void RecordSteps(IReadOnlyList<FaceCrop> batch, Tensor w)
    {
        var values = w.cpu().data<float>().ToArray();
        int d = (int)w.shape[1];
        for (var i = 0; i < batch.Count; i++)
        {
            var current = values.AsSpan(i * d, d).ToArray();
            if (_wSteps.TryGetValue(batch[i].TrackId, out var entry))
            {
                double sum = 0;
                for (var k = 0; k < d; k++) sum += (double)(current[k] - entry.Last[k]) * (current[k] - entry.Last[k]);
                entry.Steps.Add(Math.Sqrt(sum));
                _wSteps[batch[i].TrackId] = (current, entry.Steps);
            }
            else _wSteps[batch[i].TrackId] = (current, []);
        }
    }

    private Tensor Smooth(IReadOnlyList<FaceCrop> batch, Tensor w)
    {
        var values = w.cpu().data<float>().ToArray();
        int d = (int)w.shape[1];
        for (var i = 0; i < batch.Count; i++)
        {
            if (!_smoothers.TryGetValue(batch[i].TrackId, out var s))
                _smoothers[batch[i].TrackId] = s = new WSmoother(d, _options.WMinCutoff, _options.WBeta);
            s.Filter(values.AsSpan(i * d, d), batch[i].Time);
        }
        return tensor(values, w.shape).to(w.device);
    }

    private Identity IdentityOf(FaceCrop crop)
    {
        if (_tracks.TryGetValue(crop.TrackId, out var known)) return known;
        var spec = _options.TrackIdentities.TryGetValue(crop.TrackId, out var pinned) ? pinned : _options.Identity;
        var (seed, photo) = ParseIdentity(spec);
        var identity = photo != null ? FromPhoto(crop.TrackId, photo) : Synthetic(crop, seed);
        _tracks[crop.TrackId] = identity;
        return identity;
    }

    private Identity FromPhoto(int trackId, string path)
    {
        if (!_photoCodes.TryGetValue(path, out var known))
        {
            var photo = _photos.TryGetValue(path, out var p) ? p : throw new InvalidOperationException($"identity photo {path} was not prepared");
            using var scope = NewDisposeScope();
            var x = MatTensors.FromCrops([photo.AlignedCrop], _nets.Model.Device);
            var code = _nets.Model.EncodeIdentity(x).MoveToOuterDisposeScope();
            known = (code, _recognizer.Embed(photo.AlignedCrop, photo.CropLandmarks));
            _photoCodes[path] = known;
        }
        return new Identity(known.Code.alias(), known.Embedding, new TrackIdentity(trackId, "photo", null, path, null, []));
    }

    /// <summary>
    /// Draws candidates until one is at least the margin below the same-person threshold from every face the clip
    /// showed (the pre-scan's faces and this track's own first face); after the cap the least similar is taken.
    /// </summary>
    private Identity Synthetic(FaceCrop crop, long baseSeed)
    {
        var references = _clipFaces.ToList();
        if (crop.Landmarks != null) references.Add(_recognizer.Embed(crop.Crop, crop.Landmarks));
        var limit = _threshold - _options.IdentityMargin;
        var rejected = new List<RejectedCandidate>();
        (long Seed, Tensor Code, float[] Embedding, double Max)? best = null;
        var tries = Math.Max(1, _options.MaxCandidates);
        for (var k = 0; k < tries; k++)
        {
            var seed = CandidateSeed(baseSeed, crop.TrackId, k);
            var (code, embedding) = DrawCandidate(seed);
            var max = references.Count == 0 ? -1.0 : references.Max(r => OnnxFaceRecognizer.Cosine(r, embedding));
            if (max < limit)
            {
                best?.Code.Dispose();
                return new Identity(code, embedding, new TrackIdentity(crop.TrackId, "seed", seed, null, Math.Round(max, 6), rejected));
            }
            rejected.Add(new RejectedCandidate(seed, Math.Round(max, 6)));
            if (best is null || max < best.Value.Max) { best?.Code.Dispose(); best = (seed, code, embedding, max); }
            else code.Dispose();
        }
        var b = best!.Value;
        _warn($"track {crop.TrackId}: all {tries} synthetic candidates were within {_options.IdentityMargin} of the same-person threshold of a face in the clip; the least similar (seed {b.Seed}, cosine {b.Max:F3}) is used");
        return new Identity(b.Code, b.Embedding, new TrackIdentity(crop.TrackId, "seed", b.Seed, null, Math.Round(b.Max, 6),
            rejected.Where(r => r.Seed != b.Seed).ToList()));
    }

    /// <summary>Test seam: the candidate drawn for a seed (E_id code on the device, recognizer embedding).</summary>
    internal Func<long, (Tensor Code, float[] Embedding)>? CandidateOverride { get; set; }

    private (Tensor Code, float[] Embedding) DrawCandidate(long seed)
    {
        if (CandidateOverride is { } o) return o(seed);
        using var scope = NewDisposeScope();
        var g = _nets.Generator;
        var device = _nets.Model.Device;
        var gen = new torch.Generator((ulong)seed);
        var z = randn([1, g.StyleDim], generator: gen).to(device);
        var w = g.Map(z);
        if (_options.Truncation < 1)
        {
            var avg = g.LatentAvg ?? g.MeanLatent();
            w = avg + (w - avg) * _options.Truncation;
        }
        var image = g.Synthesize(w);
        // G draws FFHQ-aligned heads by construction: the image is the aligned crop, its five points FFHQ's.
        var crop256 = image.shape[2] == 256 ? image : nn.functional.interpolate(image, [256, 256], mode: InterpolationMode.Bilinear, align_corners: false);
        var code = _nets.Model.EncodeIdentity(crop256).MoveToOuterDisposeScope();
        using var mat = MatTensors.ToCrops(image)[0];
        var embedding = _recognizer.EmbedFive(mat, OnnxFaceRecognizer.FfhqFivePoints(mat.Width));
        return (code, embedding);
    }

    public void Dispose()
    {
        foreach (var t in _tracks.Values) t.Dispose();
        foreach (var p in _photoCodes.Values) p.Code.Dispose();
        foreach (var p in _photos.Values) p.AlignedCrop.Dispose();
        _photos.Clear();
        _tracks.Clear();
        _photoCodes.Clear();
    }
}

/// <summary>One-Euro filter per coordinate of a track's w (in place).</summary>
public sealed class WSmoother(int dim, double minCutoff, double beta)
{
    private readonly OneEuroFilter[] _filters = Enumerable.Range(0, dim).Select(_ => new OneEuroFilter(minCutoff, beta)).ToArray();

    public void Filter(Span<float> w, double time)
    {
        if (w.Length != _filters.Length) throw new ArgumentException($"expected a {_filters.Length}-d code, got {w.Length}");
        for (var i = 0; i < w.Length; i++) w[i] = (float)_filters[i].Filter(w[i], time);
    }
}
