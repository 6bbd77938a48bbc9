// Stands in for body-parser where Express 5 requires it (bundle only; see bundle.mjs).
// Express reads every parser off body-parser when it is loaded, and body-parser loads
// raw-body, iconv-lite and zlib for them: work at every start for parsers kontain calls
// only on the Cloud Tasks endpoint. Each parser here loads body-parser on its first use.
const parser = (name) => (...args) => require('body-parser')[name](...args);
module.exports = { json: parser('json'), raw: parser('raw'), text: parser('text'), urlencoded: parser('urlencoded') };
