// Command estargz-verify checks an eStargz blob the way a lazy-pulling snapshotter does,
// using the reference implementation (github.com/containerd/stargz-snapshotter/estargz)
// rather than anything from kontain, so the TypeScript writer is judged by an
// independent reader.
//
//	estargz-verify <blob file> <expected TOC digest>
//
// It opens the blob through its footer, checks the TOC JSON against the expected
// digest (the layer's containerd.io/snapshot/stargz/toc.digest annotation), then reads
// every chunk of every regular file through the chunk verifier, checks that the chunks
// tile the file exactly and that the whole-file digest matches. It prints a JSON
// summary on stdout and exits non-zero on the first failure.
//
//	estargz-verify reference <chunk size> <input tar> <output blob>
//
// writes the same input with the reference writer (lossless mode, the no-prefetch
// landmark first, gzip level 6) so a test can compare the two blobs' decompressed
// streams and TOCs; it prints {"tocDigest","diffID"}.
//
// Build (Debian packages golang-go and golang-github-containerd-stargz-snapshotter-dev,
// no network):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o estargz-verify ./test/estargz-verify
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

type fileSummary struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Size     int64  `json:"size"`
	Mode     int64  `json:"mode"`
	LinkName string `json:"linkName,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Chunks   int    `json:"chunks,omitempty"`
	// Hardlinks resolve to their target entry; Target names it so the caller can tell.
	Target string `json:"target,omitempty"`
}

type summary struct {
	TOCDigest string        `json:"tocDigest"`
	TOCOffset int64         `json:"tocOffset"`
	BlobSize  int64         `json:"blobSize"`
	Files     []fileSummary `json:"files"`
}

func main() {
	if len(os.Args) == 5 && os.Args[1] == "reference" {
		if err := reference(os.Args[2], os.Args[3], os.Args[4]); err != nil {
			fmt.Fprintln(os.Stderr, "estargz-verify reference:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: estargz-verify <blob file> <expected TOC digest>")
		os.Exit(2)
	}
	out, err := verify(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "estargz-verify:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "estargz-verify:", err)
		os.Exit(1)
	}
}

func verify(blobPath, expected string) (*summary, error) {
	want, err := digest.Parse(expected)
	if err != nil {
		return nil, fmt.Errorf("expected TOC digest %q: %w", expected, err)
	}
	f, err := os.Open(blobPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sr := io.NewSectionReader(f, 0, st.Size())

	// OpenFooter only parses the 51-byte footer (with the 47-byte legacy fallback);
	// doing it separately makes a broken footer fail with its own message.
	tocOffset, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		return nil, fmt.Errorf("footer: %w", err)
	}
	if footerSize != estargz.FooterSize {
		return nil, fmt.Errorf("footer is %d bytes (legacy stargz?), want %d", footerSize, estargz.FooterSize)
	}
	r, err := estargz.Open(sr)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	verifier, err := r.VerifyTOC(want)
	if err != nil {
		return nil, fmt.Errorf("TOC: %w", err)
	}

	root, ok := r.Lookup("")
	if !ok {
		return nil, fmt.Errorf("no root directory in TOC")
	}
	out := &summary{TOCDigest: r.TOCDigest().String(), TOCOffset: tocOffset, BlobSize: st.Size(), Files: []fileSummary{}}
	if err := walk(r, verifier, root, "", out); err != nil {
		return nil, err
	}
	sort.Slice(out.Files, func(i, j int) bool { return out.Files[i].Name < out.Files[j].Name })
	return out, nil
}

// walk visits the tree the Reader built from the TOC. Hardlinks show up as a second
// name for their target's entry, so their payload is verified under both names.
func walk(r *estargz.Reader, v estargz.TOCEntryVerifier, dir *estargz.TOCEntry, dirPath string, out *summary) error {
	var err error
	dir.ForeachChild(func(base string, e *estargz.TOCEntry) bool {
		name := path.Join(dirPath, base)
		s := fileSummary{Name: name, Type: e.Type, Size: e.Size, Mode: e.Mode, LinkName: e.LinkName, Digest: e.Digest}
		if e.Name != name {
			s.Target = e.Name
		}
		switch e.Type {
		case "dir":
			s.Size = 0
			out.Files = append(out.Files, s)
			err = walk(r, v, e, name, out)
		case "reg":
			s.Chunks, err = verifyFile(r, v, name, e)
			out.Files = append(out.Files, s)
		default:
			out.Files = append(out.Files, s)
		}
		return err == nil
	})
	return err
}

// verifyFile reads each chunk through the TOC's chunk verifier (what the snapshotter
// does before serving a byte), checks that the chunks tile [0, size) with no gap or
// overlap, and checks the whole-file digest. Returns the number of chunks.
func verifyFile(r *estargz.Reader, v estargz.TOCEntryVerifier, name string, e *estargz.TOCEntry) (int, error) {
	if e.Size == 0 {
		if e.Digest != "" && e.Digest != digest.FromBytes(nil).String() {
			return 0, fmt.Errorf("%s: empty file with digest %s", name, e.Digest)
		}
		return 0, nil
	}
	// Chunks are indexed under the name of the entry that holds the data, which for a
	// hardlink is its target's.
	name = e.Name
	sr, err := r.OpenFile(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	whole := sha256.New()
	chunks := 0
	for off := int64(0); off < e.Size; {
		ce, ok := r.ChunkEntryForOffset(name, off)
		if !ok {
			return 0, fmt.Errorf("%s: no chunk at offset %d", name, off)
		}
		if ce.ChunkOffset != off {
			return 0, fmt.Errorf("%s: chunk for offset %d starts at %d", name, off, ce.ChunkOffset)
		}
		if ce.ChunkSize <= 0 || off+ce.ChunkSize > e.Size {
			return 0, fmt.Errorf("%s: chunk at %d has size %d (file size %d)", name, off, ce.ChunkSize, e.Size)
		}
		if ce.ChunkDigest == "" {
			return 0, fmt.Errorf("%s: chunk at %d has no chunkDigest", name, off)
		}
		cv, err := v.Verifier(ce)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		buf := make([]byte, ce.ChunkSize)
		if n, err := sr.ReadAt(buf, ce.ChunkOffset); int64(n) != ce.ChunkSize {
			return 0, fmt.Errorf("%s: reading chunk at %d (member at %d): %d bytes, %v", name, off, ce.Offset, n, err)
		}
		if _, err := cv.Write(buf); err != nil {
			return 0, err
		}
		if !cv.Verified() {
			return 0, fmt.Errorf("%s: chunk at %d (member at %d) does not match %s", name, off, ce.Offset, ce.ChunkDigest)
		}
		whole.Write(buf)
		off += ce.ChunkSize
		chunks++
	}
	if got := fmt.Sprintf("sha256:%x", whole.Sum(nil)); got != e.Digest {
		return 0, fmt.Errorf("%s: file digest %s, TOC says %s", name, got, e.Digest)
	}
	return chunks, nil
}

// reference writes input as eStargz with the reference Writer. Build would re-encode
// every header through Go's tar.Writer; AppendTarLossLess copies them as kontain does,
// so both outputs should decompress to the same bytes up to the TOC entry. As Build
// does without a prefetch list, the no-prefetch landmark goes first. The input's
// end-of-archive blocks are trimmed because lossless mode would copy them into the
// middle of the stream (kontain drops them, like Build).
func reference(chunkSizeArg, inputPath, outputPath string) error {
	chunkSize, err := strconv.Atoi(chunkSizeArg)
	if err != nil {
		return err
	}
	input, err := os.ReadFile(inputPath)
	if err != nil {
		return err
	}
	zero := make([]byte, 512)
	for len(input) >= 512 && bytes.Equal(input[len(input)-512:], zero) {
		input = input[:len(input)-512]
	}
	var landmark bytes.Buffer
	tw := tar.NewWriter(&landmark)
	if err := tw.WriteHeader(&tar.Header{Name: estargz.NoPrefetchLandmark, Typeflag: tar.TypeReg, Size: 1}); err != nil {
		return err
	}
	if _, err := tw.Write([]byte{0xf}); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil { // pads the entry; no Close, so no end blocks
		return err
	}
	out, err := os.Create(outputPath)
	if err != nil {
		return err
	}
	defer out.Close()
	w := estargz.NewWriterLevel(out, 6)
	w.ChunkSize = chunkSize
	if err := w.AppendTarLossLess(io.MultiReader(&landmark, bytes.NewReader(input))); err != nil {
		return err
	}
	tocDigest, err := w.Close()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]string{"tocDigest": tocDigest.String(), "diffID": w.DiffID()})
}
