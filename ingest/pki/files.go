package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DeviceFiles are the paths WriteDeviceFiles wrote.
type DeviceFiles struct {
	// Cert is the device certificate (<name>.crt).
	Cert string
	// Key is its private key (<name>.key, mode 0600).
	Key string
	// CA is the CA certificate the device verifies the server with
	// (ca.pem).
	CA string
}

// WriteDeviceFiles writes an issued key and certificate under dir (made
// if missing) as <name>.crt and <name>.key (0600), and caPEM as ca.pem
// (the --cafile of mosquitto_pub). It never overwrites: an existing
// certificate or key, or a ca.pem holding another CA, is an error and
// nothing is written.
func WriteDeviceFiles(dir, name string, is *Issued, caPEM []byte) (DeviceFiles, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return DeviceFiles{}, fmt.Errorf("%w: %q cannot name a file", ErrInvalid, name)
	}
	f := DeviceFiles{
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
		CA:   filepath.Join(dir, CACertFile),
	}
	for _, p := range []string{f.Cert, f.Key} {
		if _, err := os.Lstat(p); err == nil {
			return DeviceFiles{}, fmt.Errorf("%s exists: not overwriting it (choose another directory, or move it away)", p)
		}
	}
	writeCA := true
	if _, err := os.Lstat(f.CA); err == nil {
		if !equalPEM(f.CA, caPEM) {
			return DeviceFiles{}, fmt.Errorf("%s exists and holds another CA certificate: not overwriting it (choose another directory)", f.CA)
		}
		writeCA = false
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return DeviceFiles{}, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := writeNew(f.Key, is.KeyPEM, 0o600); err != nil {
		return DeviceFiles{}, err
	}
	if err := writeNew(f.Cert, is.CertPEM, 0o644); err != nil {
		os.Remove(f.Key)
		return DeviceFiles{}, err
	}
	if writeCA {
		if err := writeNew(f.CA, caPEM, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
			os.Remove(f.Key)
			os.Remove(f.Cert)
			return DeviceFiles{}, err
		}
	}
	return f, nil
}

// writeNew creates path (which must not exist) with data.
func writeNew(path string, data []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
