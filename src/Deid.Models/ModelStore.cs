using System.Collections.Concurrent;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Deid.Models;

/// <summary>One model Deid knows about. A model is present when any of its <see cref="Files"/> alternatives
/// (paths relative to the models directory) exists; multi-file models list every file in <see cref="Required"/>.
/// <see cref="SourcePattern"/> names the published files an import of this model accepts when their names vary
/// (<c>maper_RUN_TIME_LOSS.pt</c>); otherwise the source's stem must equal the target's.</summary>
public sealed record ModelEntry(
    string Name,
    string Role,
    IReadOnlyList<string> Files,
    string Source,
    string HowToGet,
    IReadOnlyList<string>? Required = null,
    string? SourcePattern = null)
{
    /// <summary>Files that must all exist (defaults to the first alternative of <see cref="Files"/>).</summary>
    public IReadOnlyList<string> AllRequired => Required ?? [Files[0]];
}

public sealed record ModelStatus(ModelEntry Entry, bool Present, string Path, long Size, string? Sha256);

public enum FileCheck { Ok, Changed, Missing }

/// <summary>A weights file differs from what manifest.json recorded for it: it must not be used.</summary>
public sealed class WeightsChangedException(string message) : Exception(message);

/// <summary>One file recorded in manifest.json, re-hashed: <see cref="FileCheck.Changed"/> when its size or sha256 differs.</summary>
public sealed record FileVerification(string RelativePath, ModelStore.ManifestRecord Recorded, FileCheck Result);

/// <summary>
/// The models directory (<c>$DEID_MODELS</c>, else <c>models/</c> in the repository) and the catalogue of every
/// model Deid uses, with where each is published and how to get it. <c>manifest.json</c> in the directory records
/// the sha256 of every file that fetch/import placed there.
/// </summary>
public sealed class ModelStore
{
    public const string FaceApiPackage = "@vladmandic/face-api@1.7.15";
    public const string FacepluginPackage = "faceplugin-face-recognition-js@0.0.1";
    public const string DlibSystemPath = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
    public const string ManifestFile = "manifest.json";

    private static readonly string[] FaceApiModels =
    [
        "face_recognition_model", "face_landmark_68_model", "face_landmark_68_tiny_model",
        "ssd_mobilenetv1_model", "tiny_face_detector_model", "age_gender_model", "face_expression_model",
    ];

    private static IReadOnlyList<string> FaceApiFiles(string model) =>
        [$"face-api/{model}-weights_manifest.json", $"face-api/{model}.bin"];

    private const string FetchCmd = "deid models fetch";

    public static IReadOnlyList<ModelEntry> Catalogue { get; } =
    [
        new("face-api-recognition", "E_id", FaceApiFiles("face_recognition_model"),
            $"npm {FaceApiPackage} model/ (face-api.js weights, MIT)", FetchCmd, FaceApiFiles("face_recognition_model")),
        new("face-api-landmark68", "E_lnd", FaceApiFiles("face_landmark_68_model"),
            $"npm {FaceApiPackage} model/", FetchCmd, FaceApiFiles("face_landmark_68_model")),
        new("face-api-ssd-mobilenetv1", "detector", FaceApiFiles("ssd_mobilenetv1_model"),
            $"npm {FaceApiPackage} model/", FetchCmd, FaceApiFiles("ssd_mobilenetv1_model")),
        new("dlib-shape-predictor-68", "detector", ["shape_predictor_68_face_landmarks.dat"],
            "Debian/Ubuntu package libdlib-data (/usr/share/dlib)", $"apt-get install libdlib-data && {FetchCmd}"),
        new("faceplugin-recognizer", "evaluation recognizer", ["faceplugin/fr_feature.onnx"],
            $"npm {FacepluginPackage} model/fr_feature.onnx", FetchCmd),
        new("stylegan2", "G", ["stylegan2/550000.safetensors", "stylegan2/stylegan2-ffhq-config-f.safetensors"],
            "rosinality/stylegan2-pytorch checkpoints: FFHQ-256 550000.pt or FFHQ-1024 stylegan2-ffhq-config-f.pt (Google Drive links in its README)",
            "deid models import 550000.pt --as stylegan2 (or stylegan2-ffhq-config-f.pt)"),
        new("irse50", "E_id", ["irse50/model_ir_se50.safetensors"],
            "eladrich/pixel2style2pixel pretrained models: model_ir_se50.pth (IR-SE50 ArcFace, Google Drive link in its README)",
            "deid models import model_ir_se50.pth --as irse50"),
        new("inception", "E_attr", ["inception/inception_v3_google-0cc3c7bd.safetensors"],
            "torchvision inception_v3 ImageNet weights: https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
            "deid models import inception_v3_google-0cc3c7bd.pth --as inception"),
        new("attr-encoder", "E_attr (trained)", ["latent/" + LatentWeights.AttrEncoderFile],
            PortSource("attr_encoder_*.pt"), "deid models import attr_encoder_*.pt --as port-attr-encoder",
            SourcePattern: "attr_encoder_*.pt"),
        new("mapper", "M", ["latent/" + LatentWeights.MapperFile],
            PortSource("maper_*.pt"), "deid models import maper_*.pt --as port-mapper",
            SourcePattern: "maper_*.pt"),
    ];

    private static string PortSource(string file) =>
        $"{ModelImport.PortRepository} (the paper's PyTorch port) trained {file}, in the Drive folder its README's Checkpoints section links: {PortCheckpointsUrl}";

    /// <summary>The port README's "Checkpoints" Drive folder (attr_encoder_*.pt, maper_*.pt).</summary>
    public const string PortCheckpointsUrl = "https://drive.google.com/drive/folders/1Z7BTqSrPi37I4mH6C7RCJNr2v6Zx69pB";

    public string Root { get; }

    public ModelStore(string? root = null) => Root = Path.GetFullPath(root ?? DefaultDir());

    /// <summary><c>$DEID_MODELS</c>, else <c>models/</c> beside the nearest Deid.sln (working dir, then the binary's dir), else ./models.</summary>
    public static string DefaultDir()
    {
        if (Environment.GetEnvironmentVariable("DEID_MODELS") is { Length: > 0 } env) return Path.GetFullPath(env);
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Deid.sln")))
                    return Path.Combine(d.FullName, "models");
        return Path.GetFullPath("models");
    }

    /// <summary>Where the face-api.js TF.js weights live.</summary>
    public static string FaceApiDir(string? root = null) => Path.Combine(root ?? DefaultDir(), "face-api");

    public static ModelEntry Find(string name) =>
        Catalogue.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown model '{name}' (known: {string.Join(", ", Catalogue.Select(e => e.Name))})");

    /// <summary>Absolute path of the model's first present alternative, or of its first alternative when none is present.</summary>
    public string PathOf(string name)
    {
        var e = Find(name);
        return e.Files.Select(f => Path.Combine(Root, f)).FirstOrDefault(File.Exists) ?? Path.Combine(Root, e.Files[0]);
    }

    public IReadOnlyList<ModelStatus> List()
    {
        var manifest = ReadManifest();
        var list = new List<ModelStatus>();
        foreach (var e in Catalogue)
        {
            var present = e.Required != null
                ? e.Required.All(f => File.Exists(Path.Combine(Root, f)))
                : e.Files.Any(f => File.Exists(Path.Combine(Root, f)));
            var main = e.Required != null ? e.Required[^1] : e.Files.FirstOrDefault(f => File.Exists(Path.Combine(Root, f))) ?? e.Files[0];
            var path = Path.Combine(Root, main);
            long size = 0; string? sha = null;
            if (present)
            {
                size = e.Required != null ? e.Required.Sum(f => FileSize(Path.Combine(Root, f))) : FileSize(path);
                sha = manifest.TryGetValue(main, out var rec) && rec.Size == FileSize(path) ? rec.Sha256 : null;
            }
            list.Add(new ModelStatus(e, present, path, size, sha));
        }
        return list;
    }

    public sealed record ManifestRecord(string Sha256, long Size, string Source);

    public Dictionary<string, ManifestRecord> ReadManifest()
    {
        var path = Path.Combine(Root, ManifestFile);
        var result = new Dictionary<string, ManifestRecord>(StringComparer.Ordinal);
        if (!File.Exists(path)) return result;
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException ex) { throw new InvalidDataException($"{path} is not valid JSON: {ex.Message}"); }
        if (node?["files"] is JsonObject files)
            foreach (var (k, v) in files)
                if (v?["sha256"]?.GetValue<string>() is { } sha)
                    result[k] = new ManifestRecord(sha, v["size"]?.GetValue<long>() ?? -1, v["source"]?.GetValue<string>() ?? "");
        return result;
    }

    private void WriteManifest(Dictionary<string, ManifestRecord> records)
    {
        var files = new JsonObject();
        foreach (var (k, r) in records.OrderBy(p => p.Key, StringComparer.Ordinal))
            files[k] = new JsonObject { ["sha256"] = r.Sha256, ["size"] = r.Size, ["source"] = r.Source };
        var root = new JsonObject { ["files"] = files };
        var path = Path.Combine(Root, ManifestFile);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>
    /// Re-hashes every file manifest.json records (fetch and import record what they place), in path order. A weights
    /// file that changed after it was recorded loads without complaint if its shapes still fit, so only its hash can tell.
    /// </summary>
    public IReadOnlyList<FileVerification> Verify(CancellationToken ct = default)
    {
        var result = new List<FileVerification>();
        foreach (var (rel, rec) in ReadManifest().OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            ct.ThrowIfCancellationRequested();
            var path = Path.Combine(Root, rel);
            var check = !File.Exists(path) ? FileCheck.Missing
                : FileSize(path) != rec.Size || !string.Equals(Sha256Of(path), rec.Sha256, StringComparison.OrdinalIgnoreCase) ? FileCheck.Changed
                : FileCheck.Ok;
            result.Add(new FileVerification(rel, rec, check));
        }
        return result;
    }

    public static string Sha256Of(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(f));
    }

    public const string VerifiedCacheFile = ".deid-verified.json";

    /// <summary>Where <see cref="CheckBeforeLoad"/> reports a weights file with no manifest record (default: one stderr line, once per file and process).</summary>
    public static Action<string> WarningSink { get; set; } = w => Console.Error.WriteLine($"deid: warning: {w}");

    private static readonly ConcurrentDictionary<string, (long Size, long Mtime, string Sha)> Verified = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, bool> Warned = new(StringComparer.Ordinal);

    /// <summary>
    /// The one check every weights loader makes before it reads a file (face-api shards and manifests, the dlib
    /// predictor, the ONNX recognizer, safetensors): the file must match the sha256 that manifest.json recorded for
    /// it (the manifest of the nearest models directory above the file that records it, else of the default store,
    /// matched through symlinks too). A changed file throws <see cref="WeightsChangedException"/> with a one-line
    /// message naming the file and the command that restores it; a file no manifest records loads with a warning
    /// (<see cref="WarningSink"/>). Re-hashing is skipped while the file's size and mtime equal those its hash was last
    /// verified at (kept in <see cref="VerifiedCacheFile"/> beside the manifest, and in memory for this process).
    /// </summary>
    /// <returns>The verified sha256, or null when no manifest records the file (or it does not exist: the loader says so).</returns>
    public static string? CheckBeforeLoad(string path)
    {
        var full = Path.GetFullPath(path);
        FileInfo real;
        try
        {
            var fi = new FileInfo(full);
            real = fi.LinkTarget != null && fi.ResolveLinkTarget(returnFinalTarget: true) is FileInfo t ? t : fi;
            if (!real.Exists) return null;
        }
        catch (IOException) { return null; }
        var size = real.Length;
        var mtime = real.LastWriteTimeUtc.Ticks;
        if (Verified.TryGetValue(full, out var mem) && mem.Size == size && mem.Mtime == mtime) return mem.Sha;

        if (FindRecord(full, real.FullName) is not var (root, rel, rec))
        {
            if (Warned.TryAdd(full, true))
                WarningSink($"{full} is not recorded in any models manifest.json, so it is loaded without a sha256 check (files placed by `deid models fetch` or `deid models import` are recorded)");
            return null;
        }
        var fix = rec.Source.StartsWith("npm ", StringComparison.Ordinal) || rec.Source.StartsWith("libdlib-data", StringComparison.Ordinal)
            ? $"run `{FetchCmd}` to restore it" : $"run `deid models import` again (or `{FetchCmd}`) to restore it";
        if (rec.Size >= 0 && size != rec.Size)
            throw new WeightsChangedException($"weights file {full} has changed since {Path.Combine(root, ManifestFile)} recorded it ({size} bytes, recorded {rec.Size}): {fix}");
        var cache = ReadVerifiedCache(root);
        if (cache.TryGetValue(rel, out var c) && c.Size == size && c.Mtime == mtime && string.Equals(c.Sha, rec.Sha256, StringComparison.OrdinalIgnoreCase))
        {
            Verified[full] = (size, mtime, rec.Sha256);
            return rec.Sha256;
        }
        var sha = Sha256Of(real.FullName);
        if (!string.Equals(sha, rec.Sha256, StringComparison.OrdinalIgnoreCase))
            throw new WeightsChangedException($"weights file {full} has changed since {Path.Combine(root, ManifestFile)} recorded it (sha256 {sha[..12]}…, recorded {rec.Sha256[..Math.Min(12, rec.Sha256.Length)]}…): {fix}");
        Verified[full] = (size, mtime, sha);
        cache[rel] = (size, mtime, sha);
        TryWriteVerifiedCache(root, cache);
        return sha;
    }

    /// <summary>The models directory, manifest key and record of <paramref name="full"/>: by relative path, else by the real file a record points to.</summary>
    private static (string Root, string Rel, ManifestRecord Rec)? FindRecord(string full, string realFull)
    {
        var dirs = new List<string>();
        for (var d = Path.GetDirectoryName(full); d != null; d = Path.GetDirectoryName(d)) dirs.Add(d);
        try { dirs.Add(DefaultDir()); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        foreach (var dir in dirs.Distinct(StringComparer.Ordinal))
        {
            if (!File.Exists(Path.Combine(dir, ManifestFile))) continue;
            Dictionary<string, ManifestRecord> manifest;
            try { manifest = new ModelStore(dir).ReadManifest(); }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException) { continue; }
            var rel = Path.GetRelativePath(dir, full).Replace('\\', '/');
            if (!rel.StartsWith("..", StringComparison.Ordinal) && manifest.TryGetValue(rel, out var direct)) return (dir, rel, direct);
            foreach (var (k, r) in manifest)
            {
                var candidate = Path.Combine(dir, k);
                try
                {
                    var fi = new FileInfo(candidate);
                    if (!fi.Exists) continue;
                    var target = fi.LinkTarget != null && fi.ResolveLinkTarget(returnFinalTarget: true) is FileInfo t ? t.FullName : fi.FullName;
                    if (string.Equals(target, realFull, StringComparison.Ordinal)) return (dir, k, r);
                }
                catch (IOException) { }
            }
        }
        return null;
    }

    private static Dictionary<string, (long Size, long Mtime, string Sha)> ReadVerifiedCache(string root)
    {
        var result = new Dictionary<string, (long, long, string)>(StringComparer.Ordinal);
        try
        {
            var path = Path.Combine(root, VerifiedCacheFile);
            if (!File.Exists(path)) return result;
            if (JsonNode.Parse(File.ReadAllText(path)) is JsonObject o)
                foreach (var (k, v) in o)
                    if (v?["sha256"]?.GetValue<string>() is { } sha && v["size"] != null && v["mtime"] != null)
                        result[k] = (v["size"]!.GetValue<long>(), v["mtime"]!.GetValue<long>(), sha);
        }
        // a damaged cache only costs a re-hash
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or InvalidOperationException or FormatException) { result.Clear(); }
        return result;
    }

    private static void TryWriteVerifiedCache(string root, Dictionary<string, (long Size, long Mtime, string Sha)> cache)
    {
        var o = new JsonObject();
        foreach (var (k, v) in cache.OrderBy(p => p.Key, StringComparer.Ordinal))
            o[k] = new JsonObject { ["size"] = v.Size, ["mtime"] = v.Mtime, ["sha256"] = v.Sha };
        var path = Path.Combine(root, VerifiedCacheFile);
        var tmp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllText(tmp, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            File.Move(tmp, path, overwrite: true);
        }
        // a read-only models directory only loses the fast path
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (Exception e2) when (e2 is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// Places every model that has a public, scriptable source: the face-api.js weights and the faceplugin
    /// recognizer (via <c>npm pack</c>), and the dlib predictor (linked from libdlib-data). Idempotent: files already
    /// present with the sha256 recorded in manifest.json are left alone. Returns the problems it could not fix.
    /// </summary>
    public IReadOnlyList<string> Fetch(Action<string>? log = null, string npm = "npm", CancellationToken ct = default)
    {
        log ??= _ => { };
        Directory.CreateDirectory(Root);
        var manifest = ReadManifest();
        var problems = new List<string>();

        bool Verified(string rel)
        {
            var p = Path.Combine(Root, rel);
            return File.Exists(p) && manifest.TryGetValue(rel, out var r) && r.Size == FileSize(p) && r.Sha256 == Sha256Of(p);
        }

        var faceApi = FaceApiModels.SelectMany(FaceApiFiles).ToList();
        if (faceApi.All(Verified)) log($"face-api: up to date ({Path.Combine(Root, "face-api")})");
        else
        {
            log($"face-api: npm pack {FaceApiPackage}");
            FromNpm(npm, FaceApiPackage, entry => entry.StartsWith("package/model/", StringComparison.Ordinal)
                ? "face-api/" + entry["package/model/".Length..] : null, manifest, ct);
        }

        const string onnx = "faceplugin/fr_feature.onnx";
        if (Verified(onnx)) log($"faceplugin: up to date ({Path.Combine(Root, onnx)})");
        else
        {
            log($"faceplugin: npm pack {FacepluginPackage}");
            FromNpm(npm, FacepluginPackage, entry => entry == "package/model/fr_feature.onnx" ? onnx : null, manifest, ct);
        }

        const string dat = "shape_predictor_68_face_landmarks.dat";
        var datPath = Path.Combine(Root, dat);
        if (File.Exists(datPath)) log($"dlib: present ({datPath})");
        else if (File.Exists(DlibSystemPath))
        {
            try { File.CreateSymbolicLink(datPath, DlibSystemPath); log($"dlib: linked {datPath} -> {DlibSystemPath}"); }
            catch (IOException) { File.Copy(DlibSystemPath, datPath); log($"dlib: copied {DlibSystemPath}"); }
            catch (UnauthorizedAccessException) { File.Copy(DlibSystemPath, datPath); log($"dlib: copied {DlibSystemPath}"); }
        }
        else problems.Add($"dlib shape predictor missing: {DlibSystemPath} not found; install it with `sudo apt-get install libdlib-data`, then run `deid models fetch` again");

        if (File.Exists(datPath) && !(manifest.TryGetValue(dat, out var dr) && dr.Size == FileSize(datPath)))
            manifest[dat] = new ManifestRecord(Sha256Of(datPath), FileSize(datPath), "libdlib-data " + DlibSystemPath);

        WriteManifest(manifest);
        return problems;
    }

    /// <summary>
    /// Where <c>deid models import</c> writes the safetensors converted from <paramref name="sourceFile"/> for model
    /// <paramref name="asName"/>; only the published file names are known, so a catalogue lookup never guesses.
    /// </summary>
    public string ImportTarget(string sourceFile, string asName)
    {
        var e = Find(asName);
        if (e.SourcePattern is { } pattern)
        {
            return System.IO.Enumeration.FileSystemName.MatchesSimpleExpression(pattern, Path.GetFileName(sourceFile))
                ? Path.Combine(Root, e.Files[0])
                : throw new ArgumentException($"{Path.GetFileName(sourceFile)} is not a known checkpoint for model '{e.Name}' (expected {pattern}); pass -o to write elsewhere");
        }
        var stem = Path.GetFileNameWithoutExtension(sourceFile);
        var rel = e.Files.FirstOrDefault(f => Path.GetFileNameWithoutExtension(f) == stem)
            ?? throw new ArgumentException($"{Path.GetFileName(sourceFile)} is not a known checkpoint for model '{e.Name}' (expected "
                                           + string.Join(" or ", e.Files.Select(f => Path.GetFileNameWithoutExtension(f) + ".pt/.pth")) + "); pass -o to write elsewhere");
        return Path.Combine(Root, rel);
    }

    /// <summary>Records a file written into the store (sha256, size, provenance) in manifest.json.</summary>
    public void Record(string path, string source)
    {
        var full = Path.GetFullPath(path);
        var rel = Path.GetRelativePath(Root, full);
        if (rel.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(rel)) return;
        var manifest = ReadManifest();
        manifest[rel.Replace('\\', '/')] = new ManifestRecord(Sha256Of(full), FileSize(full), source);
        WriteManifest(manifest);
    }

    /// <summary>Runs <c>npm pack</c> into a temp dir and extracts the entries <paramref name="map"/> names (archive path → store path).</summary>
    private void FromNpm(string npm, string spec, Func<string, string?> map, Dictionary<string, ManifestRecord> manifest, CancellationToken ct)
    {
        var tmp = Directory.CreateTempSubdirectory("deid-npm-").FullName;
        try
        {
            var psi = new ProcessStartInfo(npm) { WorkingDirectory = tmp, RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("pack"); psi.ArgumentList.Add(spec); psi.ArgumentList.Add("--silent");
            Process p;
            try { p = Process.Start(psi)!; }
            catch (System.ComponentModel.Win32Exception ex)
            {
                throw new InvalidOperationException($"cannot run '{npm}' to fetch {spec} ({ex.Message}); install Node.js/npm (apt-get install npm)");
            }
            using (p)
            {
                var stderr = p.StandardError.ReadToEndAsync(ct);
                p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                if (p.ExitCode != 0)
                    throw new InvalidOperationException($"npm pack {spec} failed (exit {p.ExitCode}): {FirstLine(stderr.Result)}");
            }
            var tgz = Directory.GetFiles(tmp, "*.tgz").SingleOrDefault()
                ?? throw new InvalidOperationException($"npm pack {spec} produced no .tgz");

            var placed = 0;
            using (var fs = File.OpenRead(tgz))
            using (var gz = new GZipStream(fs, CompressionMode.Decompress))
            using (var tar = new TarReader(gz))
            {
                while (tar.GetNextEntry() is { } entry)
                {
                    ct.ThrowIfCancellationRequested();
                    if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream == null) continue;
                    var rel = map(entry.Name);
                    if (rel == null || rel.Contains("..")) continue;
                    var dest = Path.Combine(Root, rel);
                    Directory.CreateDirectory(Path.GetDirectoryName(dest)!);
                    var part = dest + ".tmp";
                    using (var o = File.Create(part)) entry.DataStream.CopyTo(o);
                    File.Move(part, dest, overwrite: true);
                    manifest[rel] = new ManifestRecord(Sha256Of(dest), FileSize(dest), $"npm {spec} {entry.Name}");
                    placed++;
                }
            }
            if (placed == 0) throw new InvalidOperationException($"npm package {spec} holds none of the expected model files");
        }
        finally
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Size of the file itself, following a symlink (the dlib predictor is linked, not copied).</summary>
    public static long FileSize(string path)
    {
        var fi = new FileInfo(path);
        return fi.LinkTarget != null && fi.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target ? target.Length : fi.Length;
    }

    private static string FirstLine(string s) =>
        s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "(no message)";
}
