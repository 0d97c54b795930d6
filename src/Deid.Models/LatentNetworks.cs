using Deid.Models.Encoders;
using Deid.Models.FaceApi;
using Deid.Models.Mapping;
using Deid.Models.StyleGAN2;
using Deid.Models.Weights;
using static TorchSharp.torch;
using Gen = Deid.Models.StyleGAN2.Generator;

namespace Deid.Models;

/// <summary>The network sizes <c>--random-weights</c> builds where a file is missing.</summary>
public enum RandomWeightsSize
{
    /// <summary>The method's published sizes: StyleGAN2 FFHQ-256 config-f, IR-SE50, InceptionV3, M 2560-2048-1024-512-512.</summary>
    Published,
    /// <summary>Narrow networks of the same architectures (G still 256 px): for tests and quick trials only.</summary>
    Small,
}

/// <summary>
/// Where latent mode's four networks come from. Serializable on purpose: it describes a job, and two equal specs
/// share one loaded set of networks in an engine.
/// </summary>
public sealed record LatentWeightsSpec
{
    /// <summary>The model store (default <see cref="ModelStore.DefaultDir"/>).</summary>
    public string? ModelsDir { get; init; }
    /// <summary>
    /// A folder holding <c>E_attr.safetensors</c> and <c>M.safetensors</c> (a <c>deid train</c> checkpoint, or any
    /// folder of imported files); optionally <c>G.safetensors</c> and <c>E_id.safetensors</c> too. Files it lacks come
    /// from the store.
    /// </summary>
    public string? WeightsDir { get; init; }
    /// <summary>Build missing networks with seeded random weights instead of refusing to run.</summary>
    public bool RandomWeights { get; init; }
    public RandomWeightsSize RandomSize { get; init; } = RandomWeightsSize.Published;
    public long RandomSeed { get; init; }
}

/// <summary>One of the four parts and the file it is (or would be) read from.</summary>
public sealed record LatentPart(string Role, string Path, bool Present, string HowToGet);

/// <summary>
/// The four networks of latent mode (G, E_id, E_attr, M) loaded once onto one device, composed as the
/// <see cref="IdentityDisentangler"/>. Knows which parts came from files and which are random.
/// </summary>
public sealed class LatentNetworks : IDisposable
{
    public const string GeneratorFile = "G.safetensors";
    public const string IdentityEncoderFile = "E_id.safetensors";

    public IdentityDisentangler Model { get; }
    public Gen Generator { get; }
    /// <summary>Roles ("G", "E_id", "E_attr", "M") built with random weights.</summary>
    public IReadOnlyList<string> RandomParts { get; }
    /// <summary>Role → file it was loaded from (random parts absent).</summary>
    public IReadOnlyDictionary<string, string> Files { get; }
    public string IdentityEncoderName { get; }
    public int ImageSize => Generator.Size;

    private LatentNetworks(IdentityDisentangler model, Gen g, IReadOnlyList<string> random, IReadOnlyDictionary<string, string> files, string idName)
    {
        Model = model; Generator = g; RandomParts = random; Files = files; IdentityEncoderName = idName;
    }

    /// <summary>The file each part is read from and whether it is there; nothing is loaded.</summary>
    public static IReadOnlyList<LatentPart> Parts(LatentWeightsSpec spec)
    {
        var store = new ModelStore(spec.ModelsDir);
        string? InDir(string file) => spec.WeightsDir is { } d && File.Exists(Path.Combine(d, file)) ? Path.Combine(d, file) : null;
        var g = InDir(GeneratorFile) ?? store.PathOf("stylegan2");
        var eid = InDir(IdentityEncoderFile) ?? store.PathOf("irse50");
        // A --weights-dir names where the trained pair is: what it lacks is reported there, not in the store.
        var attr = InDir(LatentWeights.AttrEncoderFile) ?? (spec.WeightsDir is { } wd ? Path.Combine(wd, LatentWeights.AttrEncoderFile) : store.PathOf("attr-encoder"));
        var m = InDir(LatentWeights.MapperFile) ?? (spec.WeightsDir is { } wm ? Path.Combine(wm, LatentWeights.MapperFile) : store.PathOf("mapper"));
        const string trainHint = ", or train your own (`deid train`) and pass --weights-dir RUN/best";
        return
        [
            new("G", g, File.Exists(g), ModelStore.Find("stylegan2").HowToGet),
            new("E_id", eid, File.Exists(eid), ModelStore.Find("irse50").HowToGet),
            new("E_attr", attr, File.Exists(attr), ModelStore.Find("attr-encoder").HowToGet + trainHint),
            new("M", m, File.Exists(m), ModelStore.Find("mapper").HowToGet + trainHint),
        ];
    }

    /// <summary>
    /// Loads every part (random where missing and allowed) onto <paramref name="device"/>. Every file is checked
    /// against its architecture strictly: a missing or mis-shaped tensor names the file and the tensor.
    /// </summary>
    /// <exception cref="WeightsException">a file is missing (and random weights are off) or does not fit.</exception>
    public static LatentNetworks Load(LatentWeightsSpec spec, Device device)
    {
        var parts = Parts(spec).ToDictionary(p => p.Role);
        // Which E_id a trained M takes is known only once M is read (128-d codes: face-api's recognizer, no file):
        // with M present, a missing IR-SE50 file is an error only if M turns out to need it.
        var missing = parts.Values.Where(p => !p.Present && !(p.Role == "E_id" && parts["M"].Present)).ToList();
        if (missing.Count > 0 && !spec.RandomWeights) throw Missing(missing);

        var random = new List<string>();
        var files = new Dictionary<string, string>();
        var owned = new List<IDisposable>();
        var small = spec.RandomSize == RandomWeightsSize.Small;
        try
        {
            T Part<T>(string role, Func<string, T> load, Func<T> build) where T : IDisposable
            {
                var p = parts[role];
                T net;
                if (p.Present)
                {
                    try { net = load(p.Path); }
                    catch (WeightsException e) when (!e.Message.Contains(p.Path, StringComparison.Ordinal))
                    {
                        throw new WeightsException($"{role} {p.Path}: {e.Message}", e);
                    }
                    files[role] = p.Path;
                }
                else
                {
                    // Each part gets its own seed, so a part's random weights do not depend on which others are present.
                    manual_seed(spec.RandomSeed * 31 + Array.IndexOf(new[] { "G", "E_id", "E_attr", "M" }, role));
                    net = build();
                    random.Add(role);
                }
                owned.Add(net);
                return net;
            }

            var g = Part("G", path => Gen.FromSafeTensors(path), () => new Gen(small ? SmallGenerator : StyleGAN2Config.Ffhq256));
            var norm = InceptionInputNormalization.MinusOneToOne;
            var attr = Part("E_attr", path =>
            {
                var (net, n) = LatentWeights.LoadAttrEncoder(path);
                norm = n;
                return net;
            }, () => new InceptionV3(numClasses: 0, auxLogits: false, width: small ? SmallWidth : 1.0));
            var m = parts["M"].Present ? Part("M", LatentWeights.LoadMapper, () => throw new InvalidOperationException()) : null;
            // E_id's kind follows M, whose input is [E_id code, E_attr code]: 128-d codes are face-api's recognizer.
            long idDim = m != null ? m.InputDim - attr.FeatureDim : small ? SmallIdDim : 512;
            IIdentityEncoder eid;
            string idName;
            // (whether or not an IR-SE50 file is installed too: a 512-d encoder cannot feed this M).
            if (idDim == 128)
            {
                var faceApiDir = ModelStore.FaceApiDir(new ModelStore(spec.ModelsDir).Root);
                try { eid = Part("E_id", _ => FaceRecognitionNet.Load(faceApiDir), () => FaceRecognitionNet.Load(faceApiDir)); }
                catch (FileNotFoundException e) { throw new WeightsException($"M takes face-api identity codes, but the face-api recognizer is missing ({e.FileName}): run `deid models fetch`", e); }
                files["E_id"] = faceApiDir;
                random.Remove("E_id");
                idName = "face-api";
            }
            else
            {
                if (!parts["E_id"].Present && !spec.RandomWeights) throw Missing([parts["E_id"]]);
                eid = Part("E_id", LoadIrSe50, () => small ? new IrSe50(width: SmallWidth, embeddingDim: SmallIdDim) : new IrSe50());
                idName = "irse50";
            }
            m ??= Part("M", _ => throw new InvalidOperationException(), () => new M(eid.Dim + attr.FeatureDim, small ? [128, g.StyleDim] : [2048, 1024, 512, g.StyleDim]));
            var model = new IdentityDisentangler(eid, attr, m, g, device) { AttributeNormalization = norm };
            return new LatentNetworks(model, g, random, files, idName);
        }
        catch
        {
            foreach (var o in owned) o.Dispose();
            throw;
        }
    }

    private static WeightsException Missing(IEnumerable<LatentPart> missing) =>
        new("latent mode needs weights that are missing: "
            + string.Join("; ", missing.Select(p => $"{p.Role} ({p.Path}): {p.HowToGet}"))
            + " (or run with --random-weights to try the pipeline with untrained networks)");

    private static IrSe50 LoadIrSe50(string path)
    {
        var net = new IrSe50();
        try { StateDict.LoadFile(net, path); net.eval(); return net; }
        catch { net.Dispose(); throw; }
    }

    private const double SmallWidth = 0.125;
    private const int SmallIdDim = 64;

    /// <summary>256 px like the published G (crops and E_id stay at their real size), a fraction of its width.</summary>
    public static StyleGAN2Config SmallGenerator { get; } = new()
    {
        Size = 256, StyleDim = 64, NMlp = 2,
        Channels = new Dictionary<int, int> { [4] = 32, [8] = 32, [16] = 32, [32] = 16, [64] = 16, [128] = 8, [256] = 8 },
    };

    public void Dispose() => Model.Dispose();
}
